"""The ledger's git policy through the real engine and CLI (docs/explanation/ledger.md): a
failing hook of the user's refuses the approval with its output and the bundle stays pending
until a resume approves it; git mid-operation or a detached HEAD stops a session before
anything is written, and an approval made while git is mid-operation is refused."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

from keel.engine.ports import ApprovalRequest, Decision
from tests.integration.conftest import (
    ScriptedApprover,
    bundle,
    git,
    json_events,
    node,
    plan,
    run_keel,
    run_session,
    write_transcript,
)

GOOD = "def add(a: int, b: int) -> int:\n    return a + b\n"


def repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("# r\n")
    git(path, "add", "README.md")
    git(path, "commit", "-qm", "user: initial")
    return path


def pre_commit(ws: Path, body: str) -> Path:
    hook = ws / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\n" + body)
    hook.chmod(0o755)
    return hook


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "GIT_"))}
    return {**env, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / ".config")}


def test_a_failing_pre_commit_hook_keeps_the_bundle_pending_until_resume(tmp_path: Path) -> None:
    ws = repo(tmp_path / "ws")
    hook = pre_commit(ws, 'echo "policy: no commits on Fridays" >&2\nexit 1\n')
    transcript = write_transcript(
        tmp_path / "t.jsonl",
        [plan(node("node-1", ["calc.py"])), bundle("node-1", 1, writes={"calc.py": GOOD})],
    )
    env = cli_env(tmp_path)
    args = ["agent", "-y", "--json", "--model", f"replay:{transcript}", "-w", str(ws), "task"]
    first = run_keel(*args, env=env)
    events = json_events(first.stdout)
    [refused] = [e for e in events if e["type"] == "ledger_refused"]
    assert refused["node"] == "node-1"
    assert "pre-commit hook refused" in refused["reason"]
    assert "policy: no commits on Fridays" in refused["output"]
    [finished] = [e for e in events if e["type"] == "session_finished"]
    assert finished["outcome"] == "failed"
    assert finished["nodes"] == {"node-1": "awaiting_approval"}
    assert first.returncode != 0
    assert not (ws / "calc.py").exists()  # nothing half-written
    assert git(ws, "log", "--format=%s").splitlines() == ["user: initial"]
    assert "node-1: not committed: the pre-commit hook refused" in first.stderr
    assert "policy: no commits on Fridays" in first.stderr
    status = run_keel("status", "-w", str(ws), env=env)
    assert "ledger refused: the pre-commit hook refused the ledger commit" in status.stdout

    hook.unlink()  # the user fixes their hook; the approval is asked (here: -y) again
    second = run_keel("resume", "-y", "--json", "-w", str(ws), env=env)
    assert second.returncode == 0, second.stderr
    [finished] = [e for e in json_events(second.stdout) if e["type"] == "session_finished"]
    assert finished["outcome"] == "success"
    assert git(ws, "show", "HEAD:calc.py") == GOOD


def test_a_detached_head_stops_the_session_before_anything_is_written(tmp_path: Path) -> None:
    ws = repo(tmp_path / "ws")
    git(ws, "switch", "-q", "--detach", "HEAD")
    transcript = write_transcript(
        tmp_path / "t.jsonl",
        [plan(node("node-1", ["calc.py"])), bundle("node-1", 1, writes={"calc.py": GOOD})],
    )
    args = ["agent", "-y", "--model", f"replay:{transcript}", "-w", str(ws), "task"]
    done = run_keel(*args, env=cli_env(tmp_path))
    assert done.returncode == 1
    assert "HEAD is detached" in done.stderr and "git switch" in done.stderr
    assert not (ws / "calc.py").exists()
    assert git(ws, "status", "--porcelain") == ""


class MergingApprover(ScriptedApprover):
    """Approves, but starts a conflicting merge in the workspace first (as a user in another
    terminal might): the approval must be refused before anything is written."""

    def __init__(self, workspace: Path) -> None:
        super().__init__([Decision(approved=True, actor="user")])
        self.workspace = workspace

    async def review(self, request: ApprovalRequest) -> Decision | None:
        await asyncio.to_thread(self._start_merge)
        return await super().review(request)

    def _start_merge(self) -> None:
        ws = self.workspace
        git(ws, "switch", "-q", "-c", "other")
        (ws / "README.md").write_text("# other\n")
        git(ws, "commit", "-qam", "other")
        git(ws, "switch", "-q", "main")
        (ws / "README.md").write_text("# main\n")
        git(ws, "commit", "-qam", "main")
        merge = ["git", "-c", "user.name=U", "-c", "user.email=u@example.com", "merge", "other"]
        subprocess.run(merge, cwd=ws, capture_output=True, check=False)
        assert (ws / ".git" / "MERGE_HEAD").exists()


async def test_an_approval_made_while_a_merge_is_in_progress_is_refused(tmp_path: Path) -> None:
    ws = repo(tmp_path / "ws")
    approver = MergingApprover(ws)
    entries: list[dict[str, Any]] = [
        plan(node("node-1", ["calc.py"])),
        bundle("node-1", 1, writes={"calc.py": GOOD}),
    ]
    result, sink = await run_session(
        ws, entries, approver=approver, auto_approve=False, flags={"mode": "cautious"}
    )
    [refused] = sink.of("ledger_refused")
    assert "a merge is in progress" in refused["reason"]
    assert "git merge --continue" in refused["reason"]
    assert approver.settlements[-1].ledger_sha is None
    assert "a merge is in progress" in (approver.settlements[-1].error or "")
    assert result.nodes["node-1"].value == "awaiting_approval"
    assert not (ws / "calc.py").exists()
    assert (ws / ".git" / "MERGE_HEAD").exists()  # the user's merge is untouched
