"""Approval against the clock: the session stops while the editor is still applying the
edit, the commit fails after the editor applied it, and approve's answer comes only once
the commit is recorded (so status and hovers right after it say committed).

The editor's reply to ``workspace/applyEdit`` is held on an event (``Keel.release``), never
delayed by a sleep.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from lsprotocol import types as T
from pygls.exceptions import JsonRpcException

from tests.e2e.bump import BASE, start_bump
from tests.e2e.conftest import Starter
from tests.e2e.editor import Keel, git
from tests.e2e.test_review_flow import entries, keel_commits


async def _held_approval(keel: Keel, bundle_id: str) -> asyncio.Task[object]:
    """Start approving; return once the editor has applied the edit and holds its reply."""
    keel.release = asyncio.Event()
    approving = asyncio.ensure_future(keel.command("keel.server.approve", {"bundleId": bundle_id}))
    await keel.edits.wait_for(bool, "workspace/applyEdit")
    assert not approving.done()
    return approving


async def test_the_session_stops_while_the_editor_applies_the_edit(
    start_keel: Starter, workspace: Path
) -> None:
    keel: Keel = await start_keel(entries())
    started = await keel.command("keel.server.startSession", {"task": "Add calc and notes"})
    calc = await keel.proposal("node-1")
    approving = await _held_approval(keel, calc["bundleId"])
    assert (workspace / "calc.py").read_bytes() == b""  # the editor created it (CreateFile)

    assert await keel.command("keel.server.abort", {}) == {"aborted": [started["sessionId"]]}
    await keel.changes.wait_for(
        lambda items: any(c["outcome"] == "aborted" for c in items), "the session to stop"
    )
    assert keel.release is not None
    keel.release.set()  # the editor's reply arrives after the session stopped
    with pytest.raises(JsonRpcException) as stopped:
        await asyncio.wait_for(approving, 30)
    message = str(stopped.value)
    assert "withdrawn while the editor applied it" in message and "nothing was committed" in message
    assert "reverted" in message
    # The editor is told to take the unapproved file back: it never keeps it.
    revert = keel.edits[-1].edit
    assert [type(c).__name__ for c in revert.document_changes or []] == ["DeleteFile"]
    assert not (workspace / "calc.py").exists() and not keel_commits(workspace)
    assert git(workspace, "status", "--porcelain") == ""
    status = await keel.command("keel.server.status")
    assert status["outcome"] == "aborted" and status["pendingBundles"] == []
    with pytest.raises(JsonRpcException) as late:
        await keel.command("keel.server.approve", {"bundleId": calc["bundleId"]})
    assert "withdrawn: its session stopped" in str(late.value)


async def test_a_commit_that_fails_after_the_editor_applied_it_is_reverted(
    start_keel: Starter, workspace: Path
) -> None:
    keel = await start_bump(start_keel, workspace)
    await keel.command("keel.server.startSession", {"task": "Bump the Python VERSION"})
    first = await keel.proposal("node-1")
    approving = await _held_approval(keel, first["bundleId"])
    bumped = BASE.replace("VERSION = 1", "VERSION = 2")
    assert keel.texts["calc.py"] == bumped  # the buffer shows the proposal, unsaved
    saved = BASE.replace("def add(a, b):", "def add(a: int, b: int) -> int:")
    (workspace / "calc.py").write_text(saved)  # meanwhile another tool saves the file
    assert keel.release is not None
    keel.release.set()
    with pytest.raises(JsonRpcException) as refused:
        await asyncio.wait_for(approving, 30)
    message = str(refused.value)
    assert "was not committed" in message and "workspace changed" in message
    assert "reverted" in message
    assert keel.texts["calc.py"] == BASE  # the buffer has its text back
    revert = keel.edits[-1].edit
    edits = [c for c in revert.document_changes or [] if isinstance(c, T.TextDocumentEdit)]
    if keel.preset == "visual-studio-code":
        assert len(edits) == 1 and revert.change_annotations is None  # no confirmation asked
    assert not keel_commits(workspace) and (workspace / "calc.py").read_text() == saved
    rebased = await keel.proposal("node-1", 2)  # the engine merged the bundle onto the file
    diff = await keel.command("keel.server.diff", {"bundleId": rebased["bundleId"]})
    assert diff["files"][0]["after"] == saved.replace("VERSION = 1", "VERSION = 2")


async def test_approve_answers_once_the_commit_is_recorded(
    start_keel: Starter, workspace: Path
) -> None:
    keel: Keel = await start_keel(entries())
    await keel.command("keel.server.startSession", {"task": "Add calc and notes"})
    calc = await keel.proposal("node-1")
    await keel.proposal("node-2")
    approved = await keel.command("keel.server.approve", {"bundleId": calc["bundleId"]})
    # No waiting: the very next requests see the commit.
    status = await keel.command("keel.server.status")
    (node1,) = [n for n in status["nodes"] if n["id"] == "node-1"]
    assert node1["state"] == "committed" and node1["ledgerEntry"] == approved["ledgerEntry"]
    report = await keel.hover("calc.py")
    assert "committed" in report and "awaiting approval" not in report
