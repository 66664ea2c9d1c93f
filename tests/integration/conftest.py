"""Helpers for tests that run the real engine (in-process or as the `keel` CLI) on real tools.

Sessions are driven by transcripts written into the test's tmp_path (the `replay:` format of
docs/reference/protocol.md) or by the fake HTTP model server in tests/fakes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from keel.app import open_engine
from keel.config import load_config
from keel.engine.events import Event
from keel.engine.ports import ApprovalRequest, Decision, Settlement
from keel.engine.session import SessionResult

KEEL = [sys.executable, "-m", "keel"]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test User",
    "GIT_AUTHOR_EMAIL": "user@example.com",
    "GIT_COMMITTER_NAME": "Test User",
    "GIT_COMMITTER_EMAIL": "user@example.com",
}


def node(
    node_id: str,
    owns: list[str],
    *,
    kind: str = "code",
    depends_on: list[str] | None = None,
    commands: list[str] | None = None,
    symbols: list[str] | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    return {
        "id": node_id,
        "title": title or f"Node {node_id}",
        "kind": kind,
        "owns": owns,
        "context": [],
        "depends_on": depends_on or [],
        "commands": commands or [],
        "contract": {"symbols": symbols or [], "forbidden": []},
    }


def plan(*nodes: dict[str, Any]) -> dict[str, Any]:
    return {"tier": "architect", "node": None, "attempt": 1, "reply": {"nodes": list(nodes)}}


def bundle(
    node_id: str,
    attempt: int = 1,
    *,
    writes: Mapping[str, str] | None = None,
    diffs: Mapping[str, str] | None = None,
    deletes: Iterable[str] = (),
    commands: Iterable[str] = (),
) -> dict[str, Any]:
    reply = {
        "writes": [{"path": p, "content": c} for p, c in (writes or {}).items()],
        "diffs": [{"path": p, "patch": d} for p, d in (diffs or {}).items()],
        "deletes": list(deletes),
        "commands": list(commands),
    }
    return {"tier": "actuator", "node": node_id, "attempt": attempt, "reply": reply}


def raw(node_id: str, attempt: int, text: str) -> dict[str, Any]:
    return {"tier": "actuator", "node": node_id, "attempt": attempt, "text": text}


def write_transcript(path: Path, entries: Iterable[Mapping[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


def demo_entries() -> list[dict[str, Any]]:
    from keel.cli import demo_transcript

    lines = demo_transcript().read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip() and "keel_transcript" not in line]


@dataclass
class RecordingSink:
    events: list[dict[str, Any]] = field(default_factory=list)

    def emit(self, event: Event) -> None:
        self.events.append(event.to_json())

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


class ScriptedApprover:
    """Answers approvals from a list of decisions (None: nobody available)."""

    def __init__(self, decisions: Iterable[Decision | None] = (), commands: bool = False) -> None:
        self.decisions = list(decisions)
        self.requests: list[ApprovalRequest] = []
        self.commands_asked: list[str] = []
        self.settlements: list[Settlement] = []
        self._commands = commands

    async def review(self, request: ApprovalRequest) -> Decision | None:
        self.requests.append(request)
        return self.decisions.pop(0) if self.decisions else None

    async def approve_command(self, node_id: str, command: str) -> bool:
        self.commands_asked.append(command)
        return self._commands

    async def settled(self, request: ApprovalRequest, settlement: Settlement) -> None:
        self.settlements.append(settlement)


async def run_session(
    workspace: Path,
    entries: Iterable[Mapping[str, Any]],
    *,
    task: str = "task",
    flags: Mapping[str, Any] | None = None,
    approver: Any = None,
    auto_approve: bool = True,
    env: Mapping[str, str] | None = None,
    sink: RecordingSink | None = None,
) -> tuple[SessionResult, RecordingSink]:
    """Run one session in-process with a transcript; returns the result and every event."""
    workspace.mkdir(parents=True, exist_ok=True)
    transcript = write_transcript(workspace.parent / f"{workspace.name}.jsonl", entries)
    all_flags = {"model": f"replay:{transcript}", **(flags or {})}
    env = {**os.environ, "HOME": str(workspace.parent), **(env or {})}
    config = load_config(workspace, env=env, flags=all_flags)
    sink = sink if sink is not None else RecordingSink()
    async with open_engine(
        workspace,
        task,
        config,
        sink=sink,
        approver=approver or ScriptedApprover(),
        auto_approve=auto_approve,
        env=env,
    ) as engine:
        result = await engine.run(task)
    return result, sink


def run_keel(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*KEEL, *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def git(workspace: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=workspace,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **GIT_ENV},
    ).stdout


def json_events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One uninterrupted run of ``tests/integration/small_session.py``'s session (a SmallRun)."""
    from tests.integration.small_session import record_small_session

    return record_small_session(tmp_path_factory.mktemp("small-run"))
