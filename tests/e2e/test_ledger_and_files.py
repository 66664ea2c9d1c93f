"""The ledger from the editor (``keel.server.ledger``, ``keel.server.rollback``) and a bundle
that deletes a file, applied through ``workspace/applyEdit`` with a ``DeleteFile``.
"""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types as T

from tests.e2e.conftest import Starter
from tests.e2e.editor import Keel, git
from tests.e2e.test_review_flow import keel_commits
from tests.integration.conftest import bundle, node, plan

BASE = "def add(a, b):\n    return a + b\n\n\nVERSION = 1\n"
BUMP = "--- a/calc.py\n+++ b/calc.py\n@@ -3,3 +3,3 @@\n \n \n-VERSION = 1\n+VERSION = 2\n"


def _commit(root: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        (root / path).write_text(text)
    git(root, "add", *files)
    git(root, "commit", "-q", "-m", "base")


async def _finished(keel: Keel, session_id: str) -> None:
    await keel.changes.wait_for(
        lambda items: any(c["sessionId"] == session_id and c["outcome"] for c in items),
        "the session to finish",
    )


async def test_ledger_and_rollback_from_the_editor(start_keel: Starter, workspace: Path) -> None:
    _commit(workspace, {"calc.py": BASE})
    keel: Keel = await start_keel(
        [plan(node("node-1", ["calc.py"], title="Bump")), bundle("node-1", diffs={"calc.py": BUMP})]
    )
    keel.open("calc.py", BASE)
    started = await keel.command("keel.server.startSession", {"task": "Bump the Python VERSION"})
    proposal = await keel.proposal("node-1")
    approved = await keel.command("keel.server.approve", {"bundleId": proposal["bundleId"]})
    sha = approved["ledgerEntry"]
    await _finished(keel, started["sessionId"])
    bumped = BASE.replace("VERSION = 1", "VERSION = 2")
    assert (workspace / "calc.py").read_text() == bumped == keel.texts["calc.py"]

    (entry,) = await keel.command("keel.server.ledger", {})
    assert entry["sha"] == sha and entry["title"] == "Bump" and entry["files"] == ["calc.py"]
    assert entry["sessionId"] == started["sessionId"] and entry["nodeId"] == "node-1"
    assert entry["approvedBy"] == "user" and entry["reverts"] is None
    assert entry["bundle"] and entry["energy"].startswith("V=0.000") and entry["timestamp"]

    edits = len(keel.edits)
    reverted = await keel.command("keel.server.rollback", {"entry": sha})
    revert_sha = reverted["ledgerEntry"]
    assert keel_commits(workspace) == [revert_sha, sha]
    assert (workspace / "calc.py").read_text() == BASE
    assert keel.texts["calc.py"] == BASE  # the open buffer follows the disk (applyEdit)
    assert len(keel.edits) == edits + 1
    assert git(workspace, "status", "--porcelain") == ""

    newest, older = await keel.command("keel.server.ledger", {"limit": 5})
    assert newest["sha"] == revert_sha and newest["reverts"] == sha and older["sha"] == sha
    assert [e["sha"] for e in await keel.command("keel.server.ledger", {"limit": 1})] == [
        revert_sha
    ]


async def test_a_deleted_file_goes_through_the_editor_and_the_ledger(
    start_keel: Starter, workspace: Path
) -> None:
    _commit(workspace, {"old.py": "OLD = 1\n"})
    keel: Keel = await start_keel(
        [
            plan(node("node-1", ["old.py", "new.py"], title="Rename the module")),
            bundle("node-1", writes={"new.py": "NEW = 1\n"}, deletes=["old.py"]),
        ]
    )
    keel.open("old.py", "OLD = 1\n")
    await keel.command("keel.server.startSession", {"task": "Replace old.py by new.py"})
    proposal = await keel.proposal("node-1")
    diff = await keel.command("keel.server.diff", {"bundleId": proposal["bundleId"]})
    changes = {f["path"]: f["change"] for f in diff["files"]}
    assert changes == {"new.py": "create", "old.py": "delete"}
    approved = await keel.command("keel.server.approve", {"bundleId": proposal["bundleId"]})
    sha = approved["ledgerEntry"]
    (applied,) = keel.edits
    operations = applied.edit.document_changes or []
    deletes = [c for c in operations if isinstance(c, T.DeleteFile)]
    assert [c.uri for c in deletes] == [keel.uri("old.py")]
    assert deletes[0].options is not None and deletes[0].options.ignore_if_not_exists
    assert [c.uri for c in operations if isinstance(c, T.CreateFile)] == [keel.uri("new.py")]
    assert keel_commits(workspace) == [sha]
    changed = git(workspace, "show", "--name-status", "--format=", sha).split()
    assert changed == ["A", "new.py", "D", "old.py"]
    assert not (workspace / "old.py").exists()
    assert (workspace / "new.py").read_text() == "NEW = 1\n"
    assert git(workspace, "status", "--porcelain") == ""
