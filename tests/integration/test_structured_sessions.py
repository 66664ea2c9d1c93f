"""Must-show 1 of local models: real ``keel agent`` processes, through the real openai SDK,
against fake OpenAI-compatible servers that refuse structured-output forms as real ones do
(llama.cpp's 500 for json_schema, a json_object-only server, a tools-only one, a text-only
one). Every session succeeds, the refused modes are each tried once on the first request
only, every request is bounded by max_tokens, and the mode is remembered in the store: the
next session in the workspace asks in it from its first request."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.fakes.model_server import FakeModelServer, RecordedRequest
from tests.integration.conftest import KEEL, bundle, node, plan
from tests.integration.small_session import (
    TASK,
    init_workspace,
    keel_env,
    key_of,
    run,
    small_entries,
)

MODEL = "openai-compatible:local-model"
LADDER = ["json_schema", "json_object", "tools", "prompt"]


def mode_of(request: RecordedRequest) -> str:
    body = request.body
    form = body.get("response_format")
    if isinstance(form, dict):
        return str(form["type"])
    tools = [t["function"]["name"] for t in body.get("tools") or ()]
    if tools and tools[-1] in ("task_plan", "artifact_bundle", "verifier_report", "speculation"):
        return "tools"  # the answer tool comes last, after any exploration tools
    return "prompt"


def agent(workspace: Path, server: FakeModelServer, home: Path, task: str = TASK) -> list[dict]:
    command = [*KEEL, "agent", "-y", "--json", "--model", MODEL, "-w", str(workspace), task]
    proc = run(command, keel_env(server, home))
    assert proc.returncode == 0, proc.stderr + proc.stdout[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


def remembered(workspace: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(workspace / ".keel" / "keel.db") as conn:
        return conn.execute("SELECT endpoint, model, mode FROM structured_modes").fetchall()


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        ("llama.cpp", "json_object"),
        ("json_object_only", "json_object"),
        ("tools_only", "tools"),
        ("text_only", "prompt"),
    ],
)
def test_sessions_succeed_in_every_mode_and_the_mode_is_remembered(
    tmp_path: Path, dialect: str, expected: str
) -> None:
    workspace = init_workspace(tmp_path / "ws")
    (workspace / "keel.toml").write_text("[max_tokens]\nactuator = 3000\n")
    with FakeModelServer(small_entries(), dialect=dialect) as server:
        events = agent(workspace, server, tmp_path)
        requests = [r for r in server.requests if r.method == "POST"]
        url, port = server.openai_base_url, server.port
    assert events[-1]["type"] == "session_finished" and events[-1]["outcome"] == "success"
    refused = LADDER[: LADDER.index(expected)]
    first_key = key_of(requests[0])
    assert [mode_of(r) for r in requests[: len(refused) + 1]] == [*refused, expected]
    assert all(key_of(r) == first_key for r in requests[: len(refused) + 1])
    assert {mode_of(r) for r in requests[len(refused) + 1 :]} == {expected}
    # Nothing is sent twice in one form (a server refusing only the exploration tools is
    # asked once more in the same mode without them).
    sent = [
        (key_of(r), r.headers.get("X-Keel-Turn"), mode_of(r), bool(r.body.get("tools")))
        for r in requests
    ]
    assert len(sent) == len(set(sent)), "a request was sent twice in the same form"
    for request in requests:
        tier = request.headers["X-Keel-Tier"]
        assert request.body["max_tokens"] == {"actuator": 3000, "architect": 4096}.get(tier, 2048)
    assert remembered(workspace) == [(url, "local-model", expected)]

    # A later session in the workspace asks in the remembered mode from its first request.
    later = [
        {**plan(node("note", ["later.txt"], title="One more note")), "attempt": 1},
        {"tier": "speculator", "node": None, "attempt": 1, "reply": {"hints": []}},
        bundle("note", writes={"later.txt": "later\n"}),
    ]
    with FakeModelServer(later, dialect=dialect, port=port) as server:
        agent(workspace, server, tmp_path, "Write one more note")
        modes = [mode_of(r) for r in server.requests if r.method == "POST"]
    assert modes and set(modes) == {expected}
    assert (workspace / "later.txt").read_text() == "later\n"


def test_a_configured_mode_is_used_without_negotiating(tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path / "ws")
    (workspace / "keel.toml").write_text('[providers.openai-compatible]\nstructured = "tools"\n')
    with FakeModelServer(small_entries(), dialect="llama.cpp") as server:
        agent(workspace, server, tmp_path)
        modes = {mode_of(r) for r in server.requests if r.method == "POST"}
    assert modes == {"tools"}
    assert remembered(workspace) == []


def test_a_configured_mode_the_server_refuses_fails_at_once_naming_the_fix(
    tmp_path: Path,
) -> None:
    workspace = init_workspace(tmp_path / "ws")
    (workspace / "keel.toml").write_text(
        '[providers.openai-compatible]\nstructured = "json_schema"\n'
    )
    with FakeModelServer(small_entries(), dialect="llama.cpp") as server:
        command = [*KEEL, "agent", "-y", "--json", "--model", MODEL, "-w", str(workspace), TASK]
        proc = run(command, keel_env(server, tmp_path))
        requests = [r for r in server.requests if r.method == "POST"]
    assert proc.returncode != 0
    assert len(requests) == 1  # a 500 that is a refusal is not retried
    assert 'structured = "auto"' in proc.stderr + proc.stdout
