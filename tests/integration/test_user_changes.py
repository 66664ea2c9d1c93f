"""Must-show 4: a session leaves the user's staged and unstaged work exactly as it was, and
`keel ledger rollback` reverts one entry with a new commit."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.conftest import bundle, git, node, plan, run_keel, run_session

GREETING = 'def greet(name: str) -> str:\n    return f"hello {name}"\n'


def _user_repo(workspace: Path) -> None:
    workspace.mkdir()
    git(workspace, "init", "-q", "-b", "main")
    (workspace / "staged.py").write_text("A = 1\n")
    (workspace / "unstaged.py").write_text("B = 1\n")
    git(workspace, "add", ".")
    git(workspace, "commit", "-qm", "user's first commit")
    (workspace / "staged.py").write_text("A = 2  # staged by the user\n")
    git(workspace, "add", "staged.py")
    (workspace / "unstaged.py").write_text("B = 2  # not staged\n")
    (workspace / "untracked.py").write_text("C = 3\n")


async def test_session_keeps_user_changes_and_rollback_reverts(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    _user_repo(workspace)
    cached_before = git(workspace, "diff", "--cached")
    worktree_before = git(workspace, "diff")
    entries = [
        plan(node("node-1", ["greet.py"], symbols=["greet"], title="Greeting")),
        bundle("node-1", writes={"greet.py": GREETING}),
    ]
    result, sink = await run_session(workspace, entries)
    assert result.outcome == "success", sink.events[-1]
    assert git(workspace, "diff", "--cached") == cached_before
    assert git(workspace, "diff") == worktree_before
    assert (workspace / "untracked.py").read_text() == "C = 3\n"
    assert git(workspace, "show", "--name-only", "--format=", "HEAD").split() == ["greet.py"]
    assert git(workspace, "status", "--porcelain").splitlines() == [
        "M  staged.py",
        " M unstaged.py",
        "?? untracked.py",
    ]

    entry = sink.of("node_committed")[0]["ledger"]
    proc = run_keel("ledger", "rollback", entry[:10], "--json", "-w", str(workspace))
    assert proc.returncode == 0, proc.stderr
    revert = json.loads(proc.stdout)["ledgerEntry"]
    assert git(workspace, "rev-parse", "HEAD").strip() == revert
    assert git(workspace, "merge-base", "--is-ancestor", entry, revert) == ""  # history kept
    assert not (workspace / "greet.py").exists()
    assert git(workspace, "diff", "--cached") == cached_before
    assert git(workspace, "diff") == worktree_before
    listed = json.loads(run_keel("ledger", "--recent", "--json", "-w", str(workspace)).stdout)
    assert [e["sha"] for e in listed] == [revert, entry]
    assert listed[0]["reverts"] == entry
    assert "Keel-Reverts: " + entry in git(workspace, "log", "-1", "--format=%B")
