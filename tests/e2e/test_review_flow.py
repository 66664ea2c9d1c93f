"""Must-show 1: a whole session reviewed from the editor, for each client preset.

Bundle proposed -> code actions listed -> hover shows the energy report -> an error the
editor reports raises V_syn and blocks approval -> clearing it lowers V_syn -> approve:
``workspace/applyEdit`` arrives and the ledger commit exists -> rejecting the other bundle
leaves the workspace unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from lsprotocol import types as T
from pygls.exceptions import JsonRpcException

from tests.e2e.conftest import Starter
from tests.e2e.editor import Keel, error, git, plain
from tests.integration.conftest import bundle, node, plan

CALC = "def add(a: int, b: int) -> int:\n    return a + b\n"
NOTES = "NOTES = ['keel']\n"
TASK = "Add a Python calculator module and a notes module"


def entries() -> list[dict[str, object]]:
    return [
        plan(
            node("node-1", ["calc.py"], title="Calculator module"),
            node("node-2", ["notes.py"], title="Notes module"),
        ),
        bundle("node-1", writes={"calc.py": CALC}),
        bundle("node-2", writes={"notes.py": NOTES}),
    ]


def keel_commits(root: Path) -> list[str]:
    log = git(root, "log", "--format=%H %s")
    return [line.split()[0] for line in log.splitlines() if " keel: " in line]


async def test_bundle_reviewed_and_committed_from_the_editor(
    start_keel: Starter, workspace: Path
) -> None:
    keel: Keel = await start_keel(entries())
    started = await keel.command("keel.server.startSession", {"task": TASK})
    assert started["sessionId"].startswith("s-")
    calc = await keel.proposal("node-1")
    notes = await keel.proposal("node-2")
    assert calc["files"] == [keel.uri("calc.py")] and calc["title"] == "Calculator module"
    assert calc["energy"]["stable"] is True and calc["energy"]["v"] == 0

    # The editor previews the proposal in a buffer (the diff's "after" text).
    diff = await keel.command("keel.server.diff", {"bundleId": calc["bundleId"]})
    (changed,) = diff["files"]
    assert changed["uri"] == keel.uri("calc.py") and changed["after"] == CALC
    assert changed["before"] == "" and "+def add" in changed["unifiedDiff"]
    version = keel.open("calc.py", CALC)

    actions = await keel.code_actions("calc.py")
    assert [a.title for a in actions] == [
        "Keel: Approve Calculator module",
        "Keel: Reject Calculator module",
        "Keel: Show diff",
    ]
    assert [a.command.command for a in actions if a.command] == [
        "keel.server.approve",
        "keel.server.reject",
        "keel.server.diff",
    ]
    assert all(
        plain(a.command.arguments) == [{"bundleId": calc["bundleId"]}] for a in actions if a.command
    )

    lenses = await keel.client.text_document_code_lens_async(
        T.CodeLensParams(text_document=T.TextDocumentIdentifier(uri=keel.uri("calc.py")))
    )
    assert [
        (lens.range.start.line, lens.command.title) for lens in lenses or [] if lens.command
    ] == [
        (0, "Keel: Approve hunk"),
        (0, "Keel: Reject hunk"),
        (0, "Keel: Diff"),
    ]
    (hunk,) = changed["hunks"]  # a created file is one hunk
    assert [plain(lens.command.arguments) for lens in lenses or [] if lens.command][:2] == [
        [{"bundleId": calc["bundleId"], "hunks": [hunk["id"]]}]
    ] * 2
    await _keel_findings(keel, "calc.py", lambda found: any("pending change" in m for m in found))
    if keel.preset == "visual-studio-code":  # the only preset with codeLens refreshSupport
        await keel.lens_refreshes.wait_for(bool, "workspace/codeLens/refresh")

    report = await keel.hover("calc.py")
    for name in ("V_syn", "V_str", "V_log", "V_boot", "V_sheaf", "V(x)", "epsilon", "attempts"):
        assert name in report
    assert "| V_syn | 0.000 |" in report and "status: **stable**" in report

    # The editor's own server reports an error in the proposed text: V_syn rises, approval blocks.
    keel.forward("calc.py", [error(1, '"x" is not defined')], version)
    report = await keel.hover("calc.py")
    assert "| V_syn | 1.000 |" in report and "status: **unstable**" in report
    assert '[Pylance] calc.py:2: error: "x" is not defined' in report
    status = await keel.command("keel.server.status")
    (pending,) = [b for b in status["pendingBundles"] if b["bundleId"] == calc["bundleId"]]
    assert pending["energy"]["stable"] is False and pending["energy"]["v_syn"] == 1.0
    with pytest.raises(JsonRpcException) as refused:
        await keel.command("keel.server.approve", {"bundleId": calc["bundleId"]})
    assert "not stable" in str(refused.value) and '"x" is not defined' in str(refused.value)
    assert not keel.edits and not keel_commits(workspace)

    # Cleared in the editor: V_syn falls back to zero and approval goes through.
    keel.forward("calc.py", [], version)
    report = await keel.hover("calc.py")
    assert "| V_syn | 0.000 |" in report and "status: **stable**" in report
    approved = await keel.command("keel.server.approve", {"bundleId": calc["bundleId"]})
    sha = approved["ledgerEntry"]
    assert keel_commits(workspace) == [sha]
    assert git(workspace, "show", "--name-only", "--format=", sha).split() == ["calc.py"]
    assert "Keel-Bundle:" in git(workspace, "show", "-s", "--format=%B", sha)
    assert (workspace / "calc.py").read_text() == CALC
    (applied,) = keel.edits
    _check_edit(keel, applied.edit)
    assert keel.texts["calc.py"] == (workspace / "calc.py").read_text()  # buffer == disk
    await _keel_findings(keel, "calc.py", lambda found: not found)  # the note is withdrawn

    # Committed: the hover follows the editor's latest diagnostics of the file.
    keel.forward("calc.py", [error(0, "unused import", "Ruff")], version)
    report = await keel.hover("calc.py")
    assert "committed" in report and "| V_syn | 1.000 |" in report and "[Ruff]" in report

    # Rejecting the other bundle changes nothing in the workspace.
    rejected = await keel.command(
        "keel.server.reject", {"bundleId": notes["bundleId"], "reason": "not needed"}
    )
    assert rejected == {"bundleId": notes["bundleId"], "decision": "rejected"}
    await keel.changes.wait_for(
        lambda items: any(c["sessionId"] and not c["running"] for c in items[-1:]),
        "the session to finish",
    )
    assert not (workspace / "notes.py").exists()
    assert keel_commits(workspace) == [sha] and len(keel.edits) == 1
    assert git(workspace, "status", "--porcelain") == ""
    _check_progress_and_settings(keel)


async def _keel_findings(keel: Keel, path: str, wanted: Callable[[list[str]], bool]) -> None:
    """Wait until Keel's own diagnostics (``source: "keel"``) on ``path`` satisfy ``wanted``."""
    uri = keel.uri(path)

    def found() -> list[str]:
        diagnostics = keel.client.diagnostics.get(uri, [])
        assert all(d.source == "keel" for d in diagnostics)
        return [d.message for d in diagnostics]

    await keel.published.wait_for(lambda _: wanted(found()), f"Keel's diagnostics on {path}")


def _check_edit(keel: Keel, edit: T.WorkspaceEdit) -> None:
    """documentChanges with the file creation; annotations only where the client has them."""
    assert edit.document_changes is not None
    creates = [c for c in edit.document_changes if isinstance(c, T.CreateFile)]
    assert [c.uri for c in creates] == [keel.uri("calc.py")]
    assert creates[0].options is not None and creates[0].options.ignore_if_exists
    if keel.preset == "visual-studio-code":
        assert edit.change_annotations is not None
        (annotation,) = edit.change_annotations.values()
        assert annotation.needs_confirmation and "Calculator module" in annotation.label
        assert creates[0].annotation_id in edit.change_annotations
    else:
        assert edit.change_annotations is None and creates[0].annotation_id is None


def _check_progress_and_settings(keel: Keel) -> None:
    """One token per session and per node, each begun cancellable and ended; the keel
    section of workspace/configuration pulled only from clients that support it."""
    kinds = {
        str(token): [type(value).__name__ for value in values]
        for token, values in keel.client.progress_reports.items()
    }
    assert len(kinds) == 3, kinds  # the session and its two nodes
    for token, sequence in kinds.items():
        assert sequence[0] == "WorkDoneProgressBegin" and sequence[-1] == "WorkDoneProgressEnd", (
            token
        )
    begins = [v[0] for v in keel.client.progress_reports.values()]
    assert all(isinstance(b, T.WorkDoneProgressBegin) and b.cancellable for b in begins)
    supports = keel.preset != "neovim@v0.7"
    assert (keel.configuration_requests > 0) == supports
    assert bool(keel.lens_refreshes) == (keel.preset == "visual-studio-code")
