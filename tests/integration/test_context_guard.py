"""Context guard, end to end: the real ``keel`` CLI against the fake model server.

What a model is shown is checked where it arrives: the requests the fake server recorded.
Project instructions reach every tier; a plan naming a secret or a path out of the workspace
goes back to the architect and the file is never sent; a prompt over
``[context] max_prompt_tokens`` is cut, and says so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from keel.app import open_engine
from keel.config import load_config
from keel.engine.ports import RepoMap
from tests.fakes.model_server import FakeModelServer, RecordedRequest
from tests.integration.conftest import (
    KEEL,
    RecordingSink,
    ScriptedApprover,
    bundle,
    git,
    json_events,
    node,
    plan,
)
from tests.integration.small_session import (
    agent_command,
    init_workspace,
    keel_env,
    key_of,
    run,
    small_entries,
)

SECRET = "sk-live-never-in-a-prompt-7781"


def _messages(request: RecordedRequest) -> tuple[str, str]:
    """The system and user text of an OpenAI chat request, as the model receives them."""
    messages = request.body["messages"]
    system = "".join(m["content"] for m in messages if m["role"] == "system")
    user = "".join(m["content"] for m in messages if m["role"] == "user")
    return system, user


def _posts(server: FakeModelServer) -> list[RecordedRequest]:
    return [r for r in server.requests if r.method == "POST"]


def test_project_instructions_reach_every_tier(tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path / "ws")
    (workspace / "AGENTS.md").write_text("AGENTS-RULE: write notes in lower case.\n")
    (workspace / ".keel").mkdir()
    (workspace / ".keel" / "instructions.md").write_text("KEEL-RULE: keep notes short.\n")
    with FakeModelServer(small_entries()) as server:
        proc = run(agent_command(workspace), keel_env(server, tmp_path))
        requests = _posts(server)
    assert proc.returncode == 0, proc.stderr
    tiers = {key_of(r)[0] for r in requests}
    assert tiers == {"architect", "speculator", "actuator", "verifier"}
    for request in requests:
        _, user = _messages(request)
        assert user.startswith("Project instructions (AGENTS.md, .keel/instructions.md)")
        assert "--- AGENTS.md ---\nAGENTS-RULE" in user, key_of(request)
        assert "--- .keel/instructions.md ---\nKEEL-RULE" in user, key_of(request)
    started = json_events(proc.stdout)[0]
    assert started["instructions"] == ["AGENTS.md", ".keel/instructions.md"]


def test_a_binary_instructions_file_is_named_not_sent(tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path / "ws")
    (workspace / "AGENTS.md").write_bytes(b"\0\0" + SECRET.encode() + b"\0")
    with FakeModelServer(small_entries()) as server:
        proc = run(agent_command(workspace), keel_env(server, tmp_path))
        requests = _posts(server)
    assert proc.returncode == 0, proc.stderr
    assert all(SECRET not in json.dumps(r.body) for r in requests)
    _, user = _messages(requests[0])
    assert "--- AGENTS.md ---\n(binary (" in user
    warnings = [e for e in json_events(proc.stdout) if e["type"] == "warning"]
    assert any("AGENTS.md not shown: binary" in e["message"] for e in warnings)


def _reading(context: list[str], attempt: int) -> dict[str, Any]:
    fix = {**node("notes", ["notes.txt"], title="Write notes"), "context": context}
    return {**plan(fix), "attempt": attempt}


def test_a_plan_reading_secrets_or_escaping_is_sent_back_and_never_read(tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path / "ws")
    (workspace / ".env").write_text(f"API_KEY={SECRET}\n")
    (tmp_path / "outside.txt").write_text(f"{SECRET}\n")
    (workspace / "shortcut.txt").symlink_to(tmp_path / "outside.txt")
    bad = [".env", "/proc/self/environ", "../outside.txt", ".git/config", "shortcut.txt"]
    entries = [
        _reading(bad, 1),
        _reading(["README.md"], 2),
        {"tier": "speculator", "node": None, "attempt": 1, "reply": {"hints": []}},
        bundle("notes", writes={"notes.txt": "notes\n"}),
    ]
    with FakeModelServer(entries) as server:
        proc = run(agent_command(workspace), keel_env(server, tmp_path))
        requests = _posts(server)
    assert proc.returncode == 0, proc.stderr
    assert all(SECRET not in json.dumps(r.body) for r in requests)
    second = next(r for r in requests if key_of(r) == ("architect", None, 2))
    _, user = _messages(second)
    for reason in [
        "notes reads an invalid context path: .env: looks like a secret",
        "/proc/self/environ: absolute paths are not allowed",
        "../outside.txt: '..' is not allowed",
        ".git/config: .git/ is reserved",
        "shortcut.txt: resolves outside the workspace",
    ]:
        assert reason in user
    invalid = [e for e in json_events(proc.stdout) if e["type"] == "plan_invalid"]
    assert [e["attempt"] for e in invalid] == [1] and len(invalid[0]["errors"]) == 5
    actuator = next(r for r in requests if key_of(r)[0] == "actuator")
    assert "--- README.md ---\n# Release notes" in _messages(actuator)[1]


def test_an_unsafe_node_id_is_sent_back_before_anything_runs(tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path / "ws")
    escape = {**plan(node("../../escape", ["x.txt"])), "attempt": 1}
    entries = [escape, {**escape, "attempt": 2}, {**escape, "attempt": 3}]
    with FakeModelServer(entries) as server:
        proc = run(agent_command(workspace), keel_env(server, tmp_path))
        requests = _posts(server)
    assert proc.returncode != 0
    assert [key_of(r)[0] for r in requests] == ["architect"] * 3
    assert "is not a safe name" in _messages(requests[1])[1]
    assert not (tmp_path / "escape").exists()
    assert git(workspace, "log", "--format=%s").splitlines() == ["initial commit"]


def test_an_actuator_prompt_over_the_bound_is_cut_and_says_so(tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path / "ws")
    (workspace / "big.txt").write_text("".join(f"line {i:05d}\n" for i in range(4_000)))
    git(workspace, "add", "big.txt")
    git(workspace, "commit", "-qm", "big file")
    (workspace / "keel.toml").write_text("[context]\nmax_prompt_tokens = 2000\n")
    entries = [
        _reading(["big.txt"], 1),
        {"tier": "speculator", "node": None, "attempt": 1, "reply": {"hints": []}},
        bundle("notes", writes={"notes.txt": "notes\n"}),
    ]
    with FakeModelServer(entries) as server:
        proc = run(agent_command(workspace), keel_env(server, tmp_path))
        requests = _posts(server)
    assert proc.returncode == 0, proc.stderr
    for request in requests:
        system, user = _messages(request)
        assert len(system) + len(user) <= 2_000 * 4, key_of(request)
    system, user = _messages(next(r for r in requests if key_of(r)[0] == "actuator"))
    assert "Cut to fit [context] max_prompt_tokens = 2000: big.txt shortened to its first" in user
    assert "of 44000 characters" in user
    assert "--- big.txt ---\nline 00000\n" in user and "line 03999" not in user


class OutlineRepository:
    """The repository map's port, answering with a fixed outline and recording the asks."""

    def __init__(self, outline: str, *, fill: bool = False) -> None:
        self.outline = outline
        self.fill = fill  # answer with exactly the budget, as a full map would
        self.asked: list[tuple[list[str], int]] = []

    async def render_map(self, task: str, *, focus: Any = (), budget_tokens: int) -> RepoMap:
        return RepoMap("(map)")

    async def related_definitions(self, paths: Any, *, budget_tokens: int) -> str:
        self.asked.append((list(paths), budget_tokens))
        if self.fill:
            return (self.outline * budget_tokens * 4)[: budget_tokens * 4]
        return self.outline


@pytest.mark.parametrize("fill", [False, True], ids=["small", "fills-its-budget"])
async def test_the_actuator_sees_the_definitions_its_code_uses(tmp_path: Path, fill: bool) -> None:
    workspace = init_workspace(tmp_path / "ws")
    (workspace / "notes.txt").write_text("old notes\n")
    git(workspace, "add", "notes.txt")
    git(workspace, "commit", "-qm", "notes")
    entries = [
        _reading([], 1),
        {"tier": "speculator", "node": None, "attempt": 1, "reply": {"hints": []}},
        bundle("notes", writes={"notes.txt": "notes\n"}),
    ]
    repository = OutlineRepository("util.py:\n  3: def helper(x: int) -> str\n", fill=fill)
    with FakeModelServer(entries) as server:
        env = keel_env(server, tmp_path)
        config = load_config(workspace, env=env, flags={"model": "openai:gpt-4.1"})
        async with open_engine(
            workspace,
            "task",
            config,
            sink=RecordingSink(),
            approver=ScriptedApprover(),
            auto_approve=True,
            env=env,
        ) as engine:
            engine.context = repository
            result = await engine.run("task")
        requests = _posts(server)
    assert result.outcome == "success", result.reason
    [(paths, budget)] = repository.asked
    assert paths == ["notes.txt"] and 0 < budget < 32_000
    _, user = _messages(next(r for r in requests if key_of(r)[0] == "actuator"))
    assert "Definitions used from other files (read only):" in user
    assert "  3: def helper(x: int) -> str" in user
    assert user.index("--- notes.txt ---") < user.index("def helper")
    assert "Cut to fit" not in user  # the budget given to the map leaves room for its header


async def test_the_actuator_gets_outlines_from_the_real_repository_map(tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path / "ws")
    (workspace / "util.py").write_text(
        "def helper(x: int) -> str:\n    return str(x)\n\n\nclass Unused:\n    pass\n"
    )
    (workspace / "calc.py").write_text("from util import helper\n\nprint(helper(2))\n")
    git(workspace, "add", ".")
    git(workspace, "commit", "-qm", "code")
    entries = [
        plan(node("calc", ["calc.py"], title="Use helper")),
        {"tier": "speculator", "node": None, "attempt": 1, "reply": {"hints": []}},
        bundle("calc", writes={"calc.py": "from util import helper\n\nprint(helper(3))\n"}),
    ]
    with FakeModelServer(entries) as server:
        proc = run(agent_command(workspace), keel_env(server, tmp_path))
        requests = _posts(server)
    assert proc.returncode == 0, proc.stderr
    _, user = _messages(next(r for r in requests if key_of(r)[0] == "actuator"))
    definitions = user.split("Definitions used from other files (read only):", 1)[1]
    assert "util.py" in definitions and "def helper(x: int) -> str" in definitions


def test_keel_map_shows_the_instructions(tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path / "ws")
    (workspace / "AGENTS.md").write_text("Run the linters.\n")
    (workspace / "keel.toml").write_text('[context]\ninstructions = "docs/missing.md"\n')
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / ".config")}
    proc = run([*KEEL, "map", "-w", str(workspace)], env)
    assert proc.returncode == 0, proc.stderr
    part = proc.stdout.split("Instructions (every prompt of every tier opens with them):\n")[1]
    assert part.splitlines() == [
        "  AGENTS.md (17 characters): shown whole",
        "  warning: [context] instructions: docs/missing.md does not exist",
    ]
    shown = json.loads(run([*KEEL, "map", "-w", str(workspace), "--json"], env).stdout)
    assert shown["instructions"] == [{"path": "AGENTS.md", "characters": 17, "note": ""}]
    assert shown["warnings"] == ["[context] instructions: docs/missing.md does not exist"]
