"""The published protocol and both clients' types follow ``keel.lsp.payloads``.

The schema, the TypeScript types and the LuaCATS classes are generated
(``scripts/protocol-schema``); this fails when a checked-in file is stale, when a client's
types name other keys than the schema (a hand edit), or when a client looks for a spelling
of a key that the server never sends.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from keel.lsp import payloads
from keel.lsp.schemagen import LUA_PATH, SCHEMA_PATH, TYPESCRIPT_PATH, outputs

ROOT = Path(__file__).resolve().parents[3]
SCHEMA: dict[str, Any] = json.loads((ROOT / SCHEMA_PATH).read_text(encoding="utf-8"))
VSCODE_SRC = ROOT / "extensions/vscode/src"
NEOVIM_LUA = ROOT / "extensions/neovim/lua/keel"


def _fields(schema: dict[str, Any]) -> dict[str, dict[str, bool]]:
    """Every object of the schema: its keys, each with whether it is required."""
    out = {}
    for name, node in schema["$defs"].items():
        if "properties" in node:
            required = set(node.get("required", []))
            out[name] = {key: key in required for key in node["properties"]}
    return out


def _typescript_fields(text: str) -> dict[str, dict[str, bool]]:
    out = {}
    for found in re.finditer(r"^export interface (\w+) \{\n(.*?)^\}", text, re.M | re.S):
        keys = re.findall(r"^  readonly (\w+)(\??):", found.group(2), re.M)
        out[found.group(1)] = {key: not optional for key, optional in keys}
    for index in ("Commands", "Notifications", "Payloads"):
        out.pop(index, None)
    return out


def _lua_fields(text: str) -> dict[str, dict[str, bool]]:
    out: dict[str, dict[str, bool]] = {}
    current: dict[str, bool] | None = None
    for line in text.splitlines():
        klass = re.match(r"---@class keel\.proto\.(\w+)", line)
        field = re.match(r"---@field (\w+)(\??) ", line)
        if klass:
            current = out.setdefault(klass.group(1), {})
        elif field and current is not None:
            current[field.group(1)] = not field.group(2)
        else:
            current = None
    return out


def test_the_checked_in_files_are_what_the_payloads_generate() -> None:
    for path, text in outputs(ROOT).items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.relative_to(ROOT)} is stale: run .venv/bin/python scripts/protocol-schema"
        )


def test_the_script_reports_a_stale_file(tmp_path: Path) -> None:
    script = ROOT / "scripts/protocol-schema"
    assert subprocess.run([sys.executable, script, "--check"], check=False).returncode == 0
    copy = tmp_path / "repo"
    (copy / "scripts").mkdir(parents=True)
    (copy / "scripts/protocol-schema").write_text(script.read_text())
    (copy / "server").symlink_to(ROOT / "server")
    for path in (SCHEMA_PATH, TYPESCRIPT_PATH, LUA_PATH):
        (copy / path).parent.mkdir(parents=True, exist_ok=True)
        (copy / path).write_text((ROOT / path).read_text())
    (copy / TYPESCRIPT_PATH).write_text("export interface Energy { readonly vee: number; }\n")
    checked = subprocess.run(
        [sys.executable, copy / "scripts/protocol-schema", "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 1 and str(TYPESCRIPT_PATH) in checked.stderr
    assert (copy / TYPESCRIPT_PATH).read_text().startswith("export interface Energy { readonly vee")
    subprocess.run([sys.executable, copy / "scripts/protocol-schema"], check=True)
    assert (copy / TYPESCRIPT_PATH).read_text() == (ROOT / TYPESCRIPT_PATH).read_text()


def test_typescript_types_name_exactly_the_schema_keys() -> None:
    text = (ROOT / TYPESCRIPT_PATH).read_text(encoding="utf-8")
    assert _typescript_fields(text) == _fields(SCHEMA)


def test_luacats_classes_name_exactly_the_schema_keys() -> None:
    text = (ROOT / LUA_PATH).read_text(encoding="utf-8")
    assert _lua_fields(text) == _fields(SCHEMA)


def test_the_parsers_see_a_drifted_key() -> None:
    """The comparisons above would catch a renamed, dropped or loosened key."""
    ts = (ROOT / TYPESCRIPT_PATH).read_text(encoding="utf-8")
    lua = (ROOT / LUA_PATH).read_text(encoding="utf-8")
    expected = _fields(SCHEMA)
    assert "  readonly bundleId: string;" in ts
    assert (
        _typescript_fields(
            ts.replace("  readonly bundleId: string;", "  readonly bundle_id: string;", 1)
        )
        != expected
    )
    assert _typescript_fields(ts.replace("  readonly v_syn: number;\n", "", 1)) != expected
    assert (
        _lua_fields(lua.replace("---@field sessionId string\n", "---@field sessionId? string\n", 1))
        != expected
    )


def test_every_message_is_in_the_schema() -> None:
    commands = {c.name for c in payloads.COMMANDS}
    assert set(SCHEMA["commands"]) == commands
    assert set(SCHEMA["notifications"]) == {
        "keel/sessionChanged",
        "keel/bundleProposed",
        "keel/editorDiagnostics",
    }
    ts = (ROOT / TYPESCRIPT_PATH).read_text(encoding="utf-8")
    for command in commands:
        assert f"'{command}':" in ts


def test_the_server_registers_exactly_the_schema_commands() -> None:
    from keel.lsp.features import commands as module

    source = Path(module.__file__).read_text(encoding="utf-8")
    registered = {"keel.server." + name for name in re.findall(r'@command\("(\w+)"\)', source)}
    assert registered == set(SCHEMA["commands"])


#: Spellings the clients used to accept besides the one the server sends.
OLD_SPELLINGS = [
    "bundle_id",
    "node_id",
    "session_id",
    "pending_bundles",
    "pendingBundle",
    "unified_diff",
    "approved_by",
    "ledger_entry",
    "latest_energy",
    "depends_on",
    "nodeTitle",
]


@pytest.mark.parametrize("spelling", OLD_SPELLINGS)
def test_vscode_reads_no_other_spelling(spelling: str) -> None:
    for path in VSCODE_SRC.rglob("*.ts"):
        if "test" in path.parts or path.name == "payloads.ts":
            continue
        text = path.read_text(encoding="utf-8")
        assert not re.search(rf"'{spelling}'|\.{spelling}\b", text), (path, spelling)


#: The names the plugin gives a payload (or a part of one) while it reads it.
LUA_PAYLOAD_NAMES = "raw|summary|node|bundle|result|params|file|checked|answer|started|diff|value"


@pytest.mark.parametrize("spelling", OLD_SPELLINGS)
def test_neovim_reads_no_other_spelling(spelling: str) -> None:
    for path in NEOVIM_LUA.glob("*.lua"):
        if path.name == "payloads.lua":
            continue
        text = path.read_text(encoding="utf-8")
        found = re.findall(rf"\b(?:{LUA_PAYLOAD_NAMES})\.{spelling}\b|\['{spelling}'\]", text)
        assert not found, (path, spelling, found)


def test_the_spelling_checks_see_a_tolerant_reader() -> None:
    lua = "local id = compat.value(raw.bundleId) or compat.value(raw.bundle_id)"
    assert re.findall(rf"\b(?:{LUA_PAYLOAD_NAMES})\.bundle_id\b", lua)
    ts = "const id = str(pick(raw, 'bundleId', 'bundle_id', 'bundle', 'id'));"
    assert re.search(r"'bundle_id'|\.bundle_id\b", ts)


def test_payloads_send_every_key_even_when_empty() -> None:
    energy = payloads.Energy(
        v=0, v_syn=0, v_str=0, v_log=0, v_boot=0, v_sheaf=0, epsilon=0.1, stable=True
    )
    node = payloads.SummaryNode(
        id="node-1",
        title="t",
        kind="",
        state="queued",
        owns=[],
        depends_on=[],
        attempts=0,
        energy=None,
        ledger_entry=None,
    )
    summary = payloads.SessionSummary(
        session_id=None,
        task=None,
        running=False,
        outcome=None,
        reason="",
        mode=None,
        epsilon=None,
        nodes=[node],
        pending_bundles=[],
        sessions=[],
    )
    wire = summary.wire()
    assert set(wire) == set(SCHEMA["$defs"]["SessionSummary"]["required"])
    assert wire["nodes"][0]["ledgerEntry"] is None and "energy" in wire["nodes"][0]
    assert set(energy.wire()) == set(SCHEMA["$defs"]["Energy"]["properties"])
    with pytest.raises(ValueError):
        payloads.DiffFile(
            uri="u",
            path="p",
            change="rename",
            before="",
            after="",
            unified_diff="",  # type: ignore[arg-type]
        )
    with pytest.raises(ValueError):  # a payload takes no key the schema does not list
        payloads.LedgerEntryResult(ledger_entry="abc", bundle="b")  # type: ignore[call-arg]


@pytest.mark.parametrize("command", payloads.COMMANDS, ids=lambda c: c.name)
def test_arguments_take_only_the_camel_case_spelling(command: payloads.Command) -> None:
    """A command argument in another spelling is refused by name, never read."""
    from pygls.exceptions import JsonRpcInvalidParams

    from keel.lsp.args import parse_args

    definition = SCHEMA["$defs"][command.args.__name__]
    assert definition.get("additionalProperties") is False
    for field, info in command.args.model_fields.items():
        if info.alias in (None, field):
            continue
        with pytest.raises(JsonRpcInvalidParams, match=f"{field}: Extra inputs are not permitted"):
            parse_args(command.name, command.args, ({field: "x"},))
