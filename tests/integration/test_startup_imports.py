"""Which heavy modules each ``keel`` command may import (issue 16).

Every command runs as a real process; at exit it writes its ``sys.modules`` to a file. Reading
commands (``--help``, ``status``, ``logs``, ``ledger``, ``abort``, ``replay --transcript``)
load neither the language server's libraries, nor a model SDK, nor the plugins, nor numpy;
``status``, ``logs`` and ``ledger`` not even pydantic (the reply models, ``keel.engine.replies``);
``agent`` and ``resume`` load the SDK of the provider they use and not the other one, and a
``resume`` whose plan is recorded does not load numpy (the repository map's, which only the
architect's prompt needs).
docs/benchmarks.md has the start-up figures this keeps.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import write_transcript
from tests.integration.small_session import (
    MODEL,
    TASK,
    SmallRun,
    copy_workspace,
    init_workspace,
    keel_env,
    small_entries,
)

#: Never loaded by a command that only reads: the LSP libraries (``keel serve`` and the
#: checker), the SDKs, numpy (the repository map) and the adapters that bring them.
HEAVY = (
    "lsprotocol",
    "pygls",
    "openai",
    "anthropic",
    "numpy",
    "keel.lsp",
    "keel.app",
    "keel.plugins",
    "keel.providers",
    "keel.context",
)
#: Nor these for ``status``, ``logs`` and ``ledger``: the store, the ledger and the reports
#: need the engine's plain records, never the pydantic reply models.
READING_HEAVY = (*HEAVY, "pydantic", "pydantic_core", "keel.engine.replies", "keel.bundles.model")
#: Not even these for ``keel --help``: it parses arguments and prints.
HELP_HEAVY = (*HEAVY, "pydantic", "aiosqlite", "asyncio", "keel.engine", "keel.store")

_PROBE = """
import atexit, json, sys
def _write():
    with open(sys.argv[1], "w") as out:
        json.dump(sorted(sys.modules), out)
atexit.register(_write)
from keel.cli import main
sys.exit(main(sys.argv[2:]))
"""


def modules_of(
    args: Sequence[str], env: Mapping[str, str], out: Path, *, status: int | None = 0
) -> set[str]:
    """The modules a ``keel ARGS`` process had imported when it exited."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(out), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if status is not None:
        assert proc.returncode == status, proc.stderr
    return set(json.loads(out.read_text()))


def loaded(modules: set[str], names: Sequence[str]) -> list[str]:
    return sorted({n for n in names for m in modules if m == n or m.startswith(n + ".")})


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[SmallRun, dict[str, str]]:
    from tests.integration.small_session import record_small_session

    home = tmp_path_factory.mktemp("startup-imports")
    run = record_small_session(home)
    env = keel_env(FakeModelServer(), home)  # never started: nothing here calls a model
    return run, env


def test_help_imports_no_adapter(tmp_path: Path) -> None:
    modules = modules_of(["--help"], {"PATH": "/usr/bin:/bin"}, tmp_path / "m.json")
    assert "keel.cli" in modules
    assert loaded(modules, HELP_HEAVY) == []


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["status", "--json"],
        ["logs"],
        ["logs", "--stats", "--errors", "--tools"],
        ["ledger", "--recent"],
        ["ledger", "--recent", "3", "--json"],
    ],
    ids=" ".join,
)
def test_reading_commands_load_no_lsp_sdk_plugin_numpy_or_pydantic(
    finished: tuple[SmallRun, dict[str, str]], tmp_path: Path, args: list[str]
) -> None:
    run, env = finished
    modules = modules_of([*args, "-w", str(run.workspace)], env, tmp_path / "m.json")
    assert {"keel.cli", "keel.engine.models"} <= modules
    assert loaded(modules, READING_HEAVY) == []


def test_ledger_show_abort_and_transcript_export_stay_light(
    finished: tuple[SmallRun, dict[str, str]], tmp_path: Path
) -> None:
    run, env = finished
    ws = ["-w", str(run.workspace)]
    sha = subprocess.run(
        ["git", "-C", str(run.workspace), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    commands: list[tuple[list[str], int]] = [
        (["ledger", "show", sha, *ws], 0),
        (["abort", *ws], 1),  # nothing is running: it says so and exits 1
        (["replay", "--transcript", str(tmp_path / "t.jsonl"), *ws], 0),
    ]
    for n, (args, status) in enumerate(commands):
        modules = modules_of(args, env, tmp_path / f"m{n}.json", status=status)
        assert loaded(modules, HEAVY) == [], args


def test_agent_on_a_transcript_loads_no_sdk_and_resume_loads_only_its_own(
    tmp_path: Path,
) -> None:
    """A replayed session needs no SDK; a session on ``openai:`` loads openai, never anthropic;
    neither loads the LSP libraries when no file needs a type checker (plain text here)."""
    transcript = write_transcript(tmp_path / "t.jsonl", small_entries())
    replayed = init_workspace(tmp_path / "replayed")
    with FakeModelServer(small_entries()) as server:
        env = keel_env(server, tmp_path)
        args = ["agent", "-y", "--json", "--model", f"replay:{transcript}", "-w", str(replayed)]
        modules = modules_of([*args, TASK], env, tmp_path / "agent.json")
        assert loaded(modules, ("openai", "anthropic", "lsprotocol", "pygls", "keel.lsp")) == []
        assert "keel.providers.replay" in modules

        stopped = init_workspace(tmp_path / "stopped")
        first = ["agent", "-y", "--json", "--model", MODEL, "--max-steps", "3"]
        modules_of([*first, "-w", str(stopped), TASK], env, tmp_path / "a.json", status=3)
        resumed = copy_workspace(stopped, tmp_path / "resumed")
        again = ["resume", "--last", "-y", "--json", "--max-steps", "50", "-w", str(resumed)]
        modules = modules_of(again, env, tmp_path / "resume.json")
        assert len(server.requests) > 3  # it went on to call the model
    assert "openai" in modules
    # numpy only ranks the repository map, and a resume replays its recorded plan without
    # building the map (its one use): docs/benchmarks.md, start-up.
    assert loaded(modules, ("anthropic", "lsprotocol", "pygls", "keel.lsp", "numpy")) == []


def test_a_session_on_anthropic_loads_anthropic_and_never_openai(tmp_path: Path) -> None:
    """The provider's SDK is imported when named: an ``anthropic:`` session (started and
    resumed) pays for that SDK alone, and its resume builds no repository map either."""
    model = "anthropic:claude-sonnet-4-5"
    stopped = init_workspace(tmp_path / "stopped")
    with FakeModelServer(small_entries()) as server:
        env = keel_env(
            server,
            tmp_path,
            ANTHROPIC_API_KEY="sk-ant-test-not-a-real-key-0123456789",
            ANTHROPIC_BASE_URL=server.anthropic_base_url,
        )
        first = ["agent", "-y", "--json", "--model", model, "--max-steps", "3"]
        modules = modules_of([*first, "-w", str(stopped), TASK], env, tmp_path / "a.json", status=3)
        assert "anthropic" in modules and loaded(modules, ("openai",)) == []
        resumed = copy_workspace(stopped, tmp_path / "resumed")
        again = ["resume", "--last", "-y", "--json", "--max-steps", "50", "-w", str(resumed)]
        modules = modules_of(again, env, tmp_path / "resume.json")
        assert {r.headers.get("X-Keel-Node") for r in server.requests} >= {"node-2", "node-3"}
    assert "anthropic" in modules
    assert loaded(modules, ("openai", "numpy", "lsprotocol", "pygls", "keel.lsp")) == []
