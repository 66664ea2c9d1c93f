"""Exploration inside a whole session, in-process with a ``replay:`` transcript.

What the architect's tool calls leave behind (events, steps, ``keel logs --tools``), what
they may not see, and the ``[context]`` switches, on a small workspace of text files so no
checker or test runner starts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from keel import reports
from keel.store import SqliteStore, store_path
from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import (
    GIT_ENV,
    KEEL,
    bundle,
    git,
    json_events,
    node,
    plan,
    run_keel,
    run_session,
)

SECRET = "sk-live-0123456789abcdef0123"


def workspace(tmp_path: Path, toml: str = "") -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    git(ws, "init", "-q", "-b", "main")
    (ws / "notes.txt").write_text("release notes\nfix the parser\n")
    (ws / ".gitignore").write_text("build/\n")
    (ws / "build").mkdir()
    (ws / "build" / "cache.txt").write_text("ignored parser cache\n")
    (ws / ".env").write_text(f"API_KEY={SECRET}\n")
    if toml:
        (ws / "keel.toml").write_text(toml)
    git(ws, "add", "notes.txt", ".gitignore")
    git(ws, "commit", "-qm", "initial")
    return ws


def entries() -> list[dict[str, Any]]:
    calls = [
        {"name": "open_file", "arguments": {"path": ".env"}},
        {"name": "search_code", "arguments": {"pattern": "parser"}},
        {"name": "open_file", "arguments": {"path": "build/cache.txt"}},
        {"name": "list_folder", "arguments": {}},
    ]
    return [
        {"tier": "architect", "node": None, "attempt": 1, "turn": 1, "tool_calls": calls},
        plan(node("node-1", ["notes.txt"], title="Notes")),
        {"tier": "speculator", "node": None, "attempt": 1, "reply": {"hints": []}},
        bundle("node-1", writes={"notes.txt": "release notes\nfixed the parser\n"}),
    ]


async def test_tool_calls_are_events_steps_and_logs(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    result, sink = await run_session(ws, entries(), task="Fix the notes")
    assert result.outcome == "success", result.reason
    explored = sink.of("explore")
    assert [(e["tool"], e["refused"]) for e in explored] == [
        ("open_file", True),
        ("search_code", False),
        ("open_file", True),
        ("list_folder", False),
    ]
    store = await SqliteStore.open(store_path(ws))
    try:
        steps = await store.session(result.session_id).steps()
        session = await reports.find_session(store, result.session_id)
        logs = await reports.logs_report(store, session, ["tools"])
    finally:
        await store.close()
    results = {s.step_id: s.result or {} for s in steps if s.kind == "tool"}
    assert "looks like it holds secrets" in results["tool:architect:-:1:turn1:1"]["text"]
    assert "ignored by git" in results["tool:architect:-:1:turn1:3"]["text"]
    search = results["tool:architect:-:1:turn1:2"]["text"]
    assert search.splitlines() == ["notes.txt:2: fix the parser"]  # not build/, not .env
    listing = results["tool:architect:-:1:turn1:4"]["text"]
    assert "notes.txt" in listing and "build" not in listing and ".env" not in listing
    assert SECRET not in str(steps) and SECRET not in str(sink.events)
    text = reports.format_logs(logs)
    assert "exploration: 4 tool call(s)" in text
    assert 'open_file(path=".env"): refused: .env: looks like it holds secrets' in text
    assert 'search_code(pattern="parser"): ' in text


@pytest.mark.parametrize("switch", ["explore_turns = 0", "explore_tokens = 0"])
async def test_a_zero_budget_offers_no_tools(tmp_path: Path, switch: str) -> None:
    ws = workspace(tmp_path, f"[context]\n{switch}\n")
    result, sink = await run_session(ws, entries(), task="Fix the notes")
    assert result.outcome == "success", result.reason
    assert sink.of("explore") == []  # the recorded tool calls were never offered to run


async def test_a_small_token_budget_ends_the_exploration(tmp_path: Path) -> None:
    ws = workspace(tmp_path, "[context]\nexplore_tokens = 20\n")
    result, sink = await run_session(ws, entries(), task="Fix the notes")
    assert result.outcome == "success", result.reason
    explored = sink.of("explore")
    assert sum(e["chars"] for e in explored if not e["refused"]) <= 80
    assert explored[-1]["refused"]  # the budget ran out before the listing


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_cli_session_explores_through_the_real_sdk(provider: str, tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    with FakeModelServer(entries()) as server:
        if provider == "openai":
            env = {
                "OPENAI_API_KEY": "sk-test-0123456789",
                "OPENAI_BASE_URL": server.openai_base_url,
            }
            model = "openai:gpt-4.1"
        else:
            env = {
                "ANTHROPIC_API_KEY": "sk-ant-test-0123456789",
                "ANTHROPIC_BASE_URL": server.anthropic_base_url,
            }
            model = "anthropic:claude-haiku-4-5"
        env.update(GIT_ENV, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
        proc = run_keel("agent", "-y", "--json", "--model", model, "-w", str(ws), "Fix it", env=env)
        requests = server.requests
    assert proc.returncode == 0, proc.stderr + proc.stdout[-2000:]
    events = json_events(proc.stdout)
    assert events[-1]["outcome"] == "success"
    assert [e["tool"] for e in events if e["type"] == "explore"] == [
        "open_file",
        "search_code",
        "open_file",
        "list_folder",
    ]
    architect = [r for r in requests if r.headers["X-Keel-Tier"] == "architect"]
    assert [r.headers.get("X-Keel-Turn") for r in architect] == [None, "2"]
    second = json.dumps(architect[1].body)
    assert "looks like it holds secrets" in second and "notes.txt:2: fix the parser" in second
    assert SECRET not in json.dumps([r.body for r in requests])


def test_a_kill_while_the_model_holds_a_turn_reruns_no_tool(tmp_path: Path) -> None:
    """SIGKILL while the second architect turn is in flight (held at the fake server): the
    resume asks that unanswered turn again, once, and replays the first turn's reply and its
    four tool results from the store; no tool runs twice."""
    ws = workspace(tmp_path)
    with FakeModelServer(entries()) as server:
        env = {"OPENAI_API_KEY": "sk-test-0123456789", "OPENAI_BASE_URL": server.openai_base_url}
        env.update(GIT_ENV, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
        command = [*KEEL, "agent", "-y", "--json", "--model", "openai:gpt-4.1", "-w", str(ws)]
        server.hang_on("architect", None, 1, turn=2)
        with subprocess.Popen(
            [*command, "Fix it"],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        ) as agent:
            try:
                server.wait_for_requests(2, timeout=60)
            finally:
                agent.kill()
            first_run, _ = agent.communicate(timeout=30)
        assert agent.returncode == -signal.SIGKILL
        resumed = run_keel("resume", "--last", "-y", "--json", "-w", str(ws), env=env)
        keys = [(r.headers["X-Keel-Tier"], r.headers.get("X-Keel-Turn")) for r in server.requests]
    assert resumed.returncode == 0, resumed.stderr
    assert keys[:3] == [("architect", None), ("architect", "2"), ("architect", "2")]
    assert keys.count(("architect", None)) == 1  # the answered first turn is not asked again
    explored = [e for e in json_events(first_run + resumed.stdout) if e["type"] == "explore"]
    assert len(explored) == 4  # all from the first run; the resume ran none again
    assert json_events(resumed.stdout)[-1]["outcome"] == "success"
