"""keel.lsp.review: a bundle's diff, the ledger and rollback, with in-memory doubles."""

from __future__ import annotations

from pathlib import Path

import pytest
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams

from keel.lsp.bundles import BundleRegistry
from keel.lsp.review import Review
from tests.unit.lsp.doubles import Editor, MemoryHost, RecordingClient, approval_request, workspace


def _review(root: Path) -> tuple[Review, MemoryHost, Editor, RecordingClient, BundleRegistry]:
    host, editor, client, bundles = MemoryHost(root), Editor(), RecordingClient(), BundleRegistry()
    review = Review(
        bundles=bundles, documents=editor.documents, client=client, workspace=workspace(root, host)
    )
    return review, host, editor, client, bundles


async def test_the_diff_of_a_pending_bundle(tmp_path: Path) -> None:
    review, _, _, _, bundles = _review(tmp_path)
    bundles.propose(
        "s-1", approval_request(changes={"a.py": b"A = 2\n"}, base={"a.py": b"A = 1\n"})
    )
    [entry] = review.diff("b1").wire()["files"]
    assert entry["change"] == "modify" and entry["path"] == "a.py"
    assert "-A = 1\n+A = 2" in entry["unifiedDiff"]
    with pytest.raises(JsonRpcInvalidParams, match="no pending bundle b2"):
        review.diff("b2")


async def test_the_ledger_newest_first(tmp_path: Path) -> None:
    review, host, _, _, _ = _review(tmp_path)
    host.ledger.commit("aaa", "Add A", {"a.py": b"A = 1\n"})
    host.ledger.commit("bbb", "Add B", {"b.py": b"B = 1\n"})
    entries = (await review.ledger(None)).wire()
    assert [e["sha"] for e in entries] == ["bbb", "aaa"]
    assert entries[0]["files"] == ["b.py"] and entries[0]["approvedBy"] == "user"


async def test_rollback_refuses_over_unsaved_edits_and_changes_nothing(tmp_path: Path) -> None:
    review, host, editor, client, _ = _review(tmp_path)
    host.ledger.commit("aaa", "Add A", {"a.py": b"A = 1\n"})
    editor.open(tmp_path, "a.py", "A = 1  # mine\n")
    with pytest.raises(JsonRpcException, match=r"a\.py has unsaved edits; save or undo them"):
        await review.rollback("aaa")
    assert host.ledger.files == {"a.py": b"A = 1\n"} and client.edits == []


async def test_rollback_brings_open_buffers_to_the_reverted_files(tmp_path: Path) -> None:
    review, host, editor, client, _ = _review(tmp_path)
    host.ledger.files["a.py"] = b"A = 0\n"
    host.ledger.commit("aaa", "Add A", {"a.py": b"A = 1\n"})
    editor.open(tmp_path, "a.py", "A = 1\n")
    assert (await review.rollback("aaa")).wire() == {"ledgerEntry": "raaa"}
    assert host.ledger.files == {"a.py": b"A = 0\n"}
    [edit] = client.edits
    assert edit.label == "Keel: revert Add A" and "A = 0" in str(edit.edit)


async def test_the_diff_gives_each_hunk_with_its_stable_id(tmp_path: Path) -> None:
    review, _, _, _, bundles = _review(tmp_path)
    bundles.propose(
        "s-1",
        approval_request(
            changes={"a.py": b"A = 2\nb\nc\n", "new.py": b"x\n"},
            base={"a.py": b"A = 1\nb\n", "new.py": None},
        ),
    )
    files = review.diff("b1").wire()["files"]
    [first, second] = files[0]["hunks"]
    assert first["header"] == "@@ -1,1 +1,1 @@"
    assert (first["removed"], first["added"]) == (["A = 1"], ["A = 2"])
    assert second == {
        "id": second["id"],
        "oldStart": 2,
        "oldLines": 0,
        "newStart": 3,
        "newLines": 1,
        "header": "@@ -2,0 +3,1 @@",
        "removed": [],
        "added": ["c"],
    }
    [created] = files[1]["hunks"]
    assert created["added"] == ["x"] and created["oldLines"] == 0
