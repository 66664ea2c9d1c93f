"""What reaches ``.keel/keel.db``: secrets never, prompts only with ``--log-llm``.

A real session runs with credentials in its environment; the model's plan and bundle quote
them and a command prints one (built from pieces, so only its output holds it). Then every
table, and the database file's bytes, are searched. The same session without ``--log-llm``
must leave no prompt text in the store, with it the prompts are there (redacted).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ScriptedApprover, bundle, git, node, plan, run_session

API_KEY = "sk-test-0123456789abcdefABCDEF"
TOKEN = "tok-hunter2-correct-horse-battery"
KEY_SHAPED = "sk-proj-AbCdEfGh0123456789"  # in no variable: redacted by its shape
SECRETS = (API_KEY, TOKEN, KEY_SHAPED)
CONTEXT_MARKER = "CONTEXT-ONLY-IN-THE-PROMPT-5f3a"


def _entries() -> list[dict[str, Any]]:
    planned = node("node-1", ["out.txt"], title=f"Write {TOKEN} down")
    planned["context"] = ["context.txt"]
    half = len(TOKEN) // 2
    prints_token = f"python -c \"import sys; sys.exit('{TOKEN[:half]}' + '{TOKEN[half:]}')\""
    reply = bundle(
        "node-1",
        writes={"out.txt": f"key={API_KEY}\nother={KEY_SHAPED}\n"},
        commands=[prints_token],
    )
    return [plan(planned), reply]


def _session(workspace: Path, *, log_llm: bool) -> list[dict[str, Any]]:
    """A committed context file whose text reaches only the actuator's prompt."""
    workspace.mkdir(parents=True)
    git(workspace, "init", "-q", "-b", "main")
    (workspace / "context.txt").write_text(f"{CONTEXT_MARKER}\n")
    git(workspace, "add", "context.txt")
    git(workspace, "commit", "-qm", "context")

    async def go() -> list[dict[str, Any]]:
        result, sink = await run_session(
            workspace,
            _entries(),
            flags={"max_attempts": 1, "log_llm": log_llm},
            approver=ScriptedApprover(commands=True),
            env={"OPENAI_API_KEY": API_KEY, "DEPLOY_TOKEN": TOKEN},
        )
        assert result.outcome == "failed"  # the command fails: the node escalates
        return sink.events

    return asyncio.run(go())


def _rows(db_path: Path) -> dict[str, str]:
    """Every table's rows, as one text per table."""
    with sqlite3.connect(db_path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: repr(db.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, tuple[Path, str]]:
    """Per ``--log-llm``: the store's path and every event the sink was sent (as JSON)."""
    root = tmp_path_factory.mktemp("redaction")
    out = {}
    for log_llm in (False, True):
        workspace = root / f"ws-{log_llm}"
        events = _session(workspace, log_llm=log_llm)
        out[log_llm] = (workspace / ".keel" / "keel.db", json.dumps(events))
    return out


@pytest.fixture(scope="module")
def sessions(runs: dict[bool, tuple[Path, str]]) -> dict[bool, Path]:
    return {log_llm: path for log_llm, (path, _) in runs.items()}


def test_the_event_stream_holds_no_secret(runs: dict[bool, tuple[Path, str]]) -> None:
    """What ``--json`` prints (often kept as a CI log) is redacted like the store."""
    for _, events in runs.values():
        assert "[redacted]" in events
        assert not any(secret in events for secret in SECRETS)


@pytest.mark.parametrize("log_llm", [False, True])
def test_no_table_and_no_byte_of_the_store_holds_a_secret(
    sessions: dict[bool, Path], log_llm: bool
) -> None:
    db_path = sessions[log_llm]
    rows = _rows(db_path)
    for table, text in rows.items():
        for secret in SECRETS:
            assert secret not in text, (table, secret)
    raw = b"".join(p.read_bytes() for p in db_path.parent.glob("keel.db*"))
    assert not any(secret.encode() in raw for secret in SECRETS)
    # the secrets were there and were replaced, in every kind of record the audit named
    for table in ("attempts", "events", "steps", "plan", "nodes", "escalations"):
        assert "[redacted]" in rows[table], table


def test_the_command_output_really_held_the_token(sessions: dict[bool, Path]) -> None:
    """Guards the test above: the failing command's output is in the evidence, redacted."""
    with sqlite3.connect(sessions[False]) as db:
        [(evidence,)] = db.execute("SELECT evidence FROM attempts").fetchall()
    [item] = json.loads(evidence)
    assert (item["source"], item["exit_code"]) == ("command", 1)
    assert item["message"] == "failed: [redacted]"


def test_without_log_llm_no_prompt_is_stored_but_sizes_are(sessions: dict[bool, Path]) -> None:
    rows = _rows(sessions[False])
    assert not any(CONTEXT_MARKER in text for text in rows.values())
    with sqlite3.connect(sessions[False]) as db:
        calls = db.execute(
            "SELECT prompt, response, prompt_chars, reply_chars, ok FROM model_calls"
        )
        stored = calls.fetchall()
    assert stored and all(p is None and r is None for p, r, *_ in stored)
    assert all(pc > 0 for _, _, pc, _, _ in stored)
    assert all(rc > 0 for _, _, _, rc, ok in stored if ok)  # a failed call has no reply


def test_with_log_llm_the_prompts_are_stored(sessions: dict[bool, Path]) -> None:
    with sqlite3.connect(sessions[True]) as db:
        prompts = [p for (p,) in db.execute("SELECT prompt FROM model_calls")]
    assert any(CONTEXT_MARKER in (p or "") for p in prompts)


def test_a_rejected_plan_is_printed_without_its_secrets(tmp_path: Path) -> None:
    """``plan_invalid`` goes only to the sink (not the store), and quotes the bad plan; a
    repaired plan's ``plan_repaired`` quotes what it repaired. Neither shows a secret."""
    escaping = node("node-1", [f"../{TOKEN}.txt"])  # no repair for a path out of the workspace
    unknown_dependency = node("node-1", ["out.txt"], depends_on=[f"node-{TOKEN}"])  # dropped
    entries = [
        plan(escaping),
        {**plan(unknown_dependency), "attempt": 2},
        bundle("node-1", writes={"out.txt": "ok\n"}),
    ]

    async def go() -> list[dict[str, Any]]:
        result, sink = await run_session(
            tmp_path / "ws", entries, env={"DEPLOY_TOKEN": TOKEN}, flags={"max_attempts": 1}
        )
        assert result.outcome == "success"
        return sink.events

    events = asyncio.run(go())
    rejected = [e for e in events if e["type"] == "plan_invalid"]
    assert rejected and "../" in json.dumps(rejected[0]["errors"])
    repaired = [e for e in events if e["type"] == "plan_repaired"]
    assert repaired and "node-" in json.dumps(repaired[0]["repairs"])
    assert TOKEN not in json.dumps(events)
