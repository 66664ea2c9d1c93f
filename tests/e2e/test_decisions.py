"""Deciding bundles under stress: racing approvals, decided bundles, ``applied: false``,
unsaved edits in the user's buffer, and a partial (per-file) approval.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pygls.exceptions import JsonRpcException

from tests.e2e.conftest import Starter
from tests.e2e.editor import Keel, git
from tests.e2e.test_review_flow import CALC, NOTES, entries, keel_commits
from tests.integration.conftest import bundle, node, plan


async def test_racing_approvals_decided_bundles_and_applied_false(
    start_keel: Starter, workspace: Path
) -> None:
    keel: Keel = await start_keel(entries())
    await keel.command("keel.server.startSession", {"task": "Add Python calc and notes modules"})
    calc, notes = await keel.proposal("node-1"), await keel.proposal("node-2")

    # Two approvals of the same bundle race: exactly one wins.
    both = await asyncio.gather(
        keel.command("keel.server.approve", {"bundleId": calc["bundleId"]}),
        keel.command("keel.server.approve", {"bundleId": calc["bundleId"]}),
        return_exceptions=True,
    )
    wins = [r for r in both if isinstance(r, dict)]
    losses = [r for r in both if isinstance(r, JsonRpcException)]
    assert len(wins) == 1 and len(losses) == 1, both
    assert "already being decided" in str(losses[0])
    sha = wins[0]["ledgerEntry"]
    assert keel_commits(workspace) == [sha]

    # A decided bundle says how it was decided.
    for command in ("keel.server.approve", "keel.server.reject"):
        with pytest.raises(JsonRpcException) as late:
            await keel.command(command, {"bundleId": calc["bundleId"]})
        assert f"already decided: approved (ledger entry {sha})" in str(late.value)

    # The editor declines the edit: the bundle stays pending and nothing is committed.
    keel.apply = False
    with pytest.raises(JsonRpcException) as declined:
        await keel.command("keel.server.approve", {"bundleId": notes["bundleId"]})
    assert "did not apply" in str(declined.value) and "stays pending" in str(declined.value)
    assert keel.edits[-1].edit.document_changes  # it was asked
    assert not (workspace / "notes.py").exists() and keel_commits(workspace) == [sha]
    status = await keel.command("keel.server.status")
    assert [b["bundleId"] for b in status["pendingBundles"]] == [notes["bundleId"]]

    keel.apply = True  # and it can still be approved
    again = await keel.command("keel.server.approve", {"bundleId": notes["bundleId"]})
    assert keel_commits(workspace) == [again["ledgerEntry"], sha]
    assert (workspace / "notes.py").read_text() == NOTES
    assert (workspace / "calc.py").read_text() == CALC


async def test_unsaved_edits_are_never_overwritten(start_keel: Starter, workspace: Path) -> None:
    (workspace / "calc.py").write_text("def add(a, b):\n    return a + b\n\n\nVERSION = 1\n")
    git(workspace, "add", "calc.py")
    git(workspace, "commit", "-q", "-m", "calc")
    typed = "def add(a: int, b: int) -> int:\n    return a + b\n\n\nVERSION = 1\n"
    patch = "--- a/calc.py\n+++ b/calc.py\n@@ -3,3 +3,3 @@\n \n \n-VERSION = 1\n+VERSION = 2\n"
    keel: Keel = await start_keel(
        [
            plan(node("node-1", ["calc.py"], title="Bump")),
            bundle("node-1", diffs={"calc.py": patch}),
        ]
    )
    keel.open("calc.py", (workspace / "calc.py").read_text())
    await keel.command("keel.server.startSession", {"task": "Bump the Python VERSION"})
    first = await keel.proposal("node-1")
    keel.change("calc.py", typed)  # the user edits the buffer and does not save

    with pytest.raises(JsonRpcException) as merged:
        await keel.command("keel.server.approve", {"bundleId": first["bundleId"]})
    assert "unsaved edits" in str(merged.value) and "merged" in str(merged.value)
    assert not keel.edits and not keel_commits(workspace)

    second = await keel.proposal("node-1", 2)  # re-verified on top of the user's edits
    diff = await keel.command("keel.server.diff", {"bundleId": second["bundleId"]})
    assert diff["files"][0]["after"] == typed.replace("VERSION = 1", "VERSION = 2")
    approved = await keel.command("keel.server.approve", {"bundleId": second["bundleId"]})
    assert keel_commits(workspace) == [approved["ledgerEntry"]]
    assert (workspace / "calc.py").read_text() == typed.replace("VERSION = 1", "VERSION = 2")
    (edit,) = keel.edits  # the buffer (with the user's edits) gets only the bundle's change
    (change,) = edit.edit.document_changes or []
    assert [e.new_text for e in change.edits] == ["VERSION = 2\n"]


async def test_per_file_approval_commits_only_those_files(
    start_keel: Starter, workspace: Path
) -> None:
    keel: Keel = await start_keel(
        [
            plan(node("node-1", ["a.py", "b.py"], title="Two files")),
            bundle("node-1", writes={"a.py": "A = 1\n", "b.py": "B = 2\n"}),
        ]
    )
    await keel.command("keel.server.startSession", {"task": "Add two Python modules"})
    whole = await keel.proposal("node-1")
    assert whole["files"] == [keel.uri("a.py"), keel.uri("b.py")]
    with pytest.raises(JsonRpcException) as stranger:
        await keel.command(
            "keel.server.approve", {"bundleId": whole["bundleId"], "files": [keel.uri("c.py")]}
        )
    assert "is not a file of bundle" in str(stranger.value)
    first = await keel.command(
        "keel.server.approve", {"bundleId": whole["bundleId"], "files": [keel.uri("a.py")]}
    )
    assert git(workspace, "show", "--name-only", "--format=", first["ledgerEntry"]).split() == [
        "a.py"
    ]
    assert not (workspace / "b.py").exists()
    rest = await keel.proposal("node-1", 2)  # the rest, verified again
    assert rest["files"] == [keel.uri("b.py")]
    second = await keel.command("keel.server.approve", {"bundleId": rest["bundleId"]})
    assert keel_commits(workspace) == [second["ledgerEntry"], first["ledgerEntry"]]
    assert (workspace / "b.py").read_text() == "B = 2\n"


BASE = "def add(a, b):\n    return a + b\n\n\nVERSION = 1\n"
BUMP = "--- a/calc.py\n+++ b/calc.py\n@@ -3,3 +3,3 @@\n \n \n-VERSION = 1\n+VERSION = 2\n"


async def _bump(start_keel: Starter, workspace: Path) -> tuple[Keel, dict[str, object]]:
    (workspace / "calc.py").write_text(BASE)
    git(workspace, "add", "calc.py")
    git(workspace, "commit", "-q", "-m", "calc")
    entries = [
        plan(node("node-1", ["calc.py"], title="Bump")),
        bundle("node-1", diffs={"calc.py": BUMP}),
    ]
    keel: Keel = await start_keel(entries)
    await keel.command("keel.server.startSession", {"task": "Bump the Python VERSION"})
    return keel, await keel.proposal("node-1")


async def test_conflicting_unsaved_edits_refuse_and_keep_the_bundle(
    start_keel: Starter, workspace: Path
) -> None:
    keel, proposal = await _bump(start_keel, workspace)
    keel.open("calc.py", BASE)
    keel.change("calc.py", BASE.replace("VERSION = 1", "VERSION = 7"))  # the same line, unsaved
    with pytest.raises(JsonRpcException) as refused:
        await keel.command("keel.server.approve", {"bundleId": proposal["bundleId"]})
    assert "conflict" in str(refused.value) and "stays pending" in str(refused.value)
    assert not keel.edits and not keel_commits(workspace)
    assert (workspace / "calc.py").read_text() == BASE
    status = await keel.command("keel.server.status")
    assert [b["bundleId"] for b in status["pendingBundles"]] == [proposal["bundleId"]]


async def test_a_file_changed_on_disk_is_rebased_not_overwritten(
    start_keel: Starter, workspace: Path
) -> None:
    keel, proposal = await _bump(start_keel, workspace)
    saved = "def add(a: int, b: int) -> int:\n    return a + b\n\n\nVERSION = 1\n"
    (workspace / "calc.py").write_text(saved)  # saved by the user (or another tool)
    with pytest.raises(JsonRpcException) as moved:
        await keel.command("keel.server.approve", {"bundleId": proposal["bundleId"]})
    assert "changed on disk" in str(moved.value) and "re-bases" in str(moved.value)
    assert not keel_commits(workspace) and (workspace / "calc.py").read_text() == saved
    rebased = await keel.proposal("node-1", 2)
    approved = await keel.command("keel.server.approve", {"bundleId": rebased["bundleId"]})
    assert keel_commits(workspace) == [approved["ledgerEntry"]]
    assert (workspace / "calc.py").read_text() == saved.replace("VERSION = 1", "VERSION = 2")
