"""An editor that applies an approval creates new files on disk, empty, before the ledger
writes them (an LSP ``CreateFile``). The approval names them in ``Decision.created`` and the
commit takes that empty file for "absent"; any other file found in the way is a conflict.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.engine.ports import ApprovalRequest, Decision
from tests.integration.conftest import ScriptedApprover, bundle, git, node, plan, run_session

CALC = "def add(a: int, b: int) -> int:\n    return a + b\n"


class CreatingEditor(ScriptedApprover):
    """Approves like the language server does after ``workspace/applyEdit``."""

    def __init__(self, workspace: Path, found: bytes, declared: bool) -> None:
        super().__init__()
        self._workspace, self._found, self._declared = workspace, found, declared

    async def review(self, request: ApprovalRequest) -> Decision | None:
        self.requests.append(request)
        (self._workspace / "calc.py").write_bytes(self._found)  # what the editor left there
        return Decision(approved=True, created=["calc.py"] if self._declared else ())


@pytest.mark.parametrize(
    ("found", "declared", "committed"),
    [
        (b"", True, True),  # the editor's own empty file: part of the approval
        (b"", False, False),  # not declared: the ledger sees a file that should not be there
        (b"x = 1\n", True, False),  # content the user typed is never overwritten
    ],
)
async def test_a_file_the_editor_created_empty_is_part_of_the_approval(
    tmp_path: Path, found: bytes, declared: bool, committed: bool
) -> None:
    workspace = tmp_path / "ws"
    editor = CreatingEditor(workspace, found, declared)
    entries = [plan(node("node-1", ["calc.py"])), bundle("node-1", writes={"calc.py": CALC})]
    result, _ = await run_session(
        workspace,
        entries,
        task="Add a Python calculator module",
        flags={"mode": "cautious", "max_attempts": 1},
        approver=editor,
        auto_approve=False,
    )
    log = git(workspace, "log", "--format=%s", "--all") if (workspace / ".git").exists() else ""
    if committed:
        assert result.outcome == "success" and (workspace / "calc.py").read_text() == CALC
        assert editor.settlements[0].ledger_sha and "keel: Node node-1" in log
    else:
        assert "the workspace changed" in (editor.settlements[0].error or "")
        assert (workspace / "calc.py").read_bytes() == found and "keel:" not in log
