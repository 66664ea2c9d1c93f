"""The terminal approver's pieces without a terminal: keys, the editor round trip, end of input.

The whole flow through a real pseudo-terminal is in tests/integration/test_terminal_approval.py.
"""

from __future__ import annotations

import io
from pathlib import Path

from keel.engine.ports import ApprovalRequest, Decision
from keel.terminal import TerminalApprover, edit_files, editor_command

REQUEST = ApprovalRequest(
    session_id="s",
    node_id="node-1",
    title="Notes",
    bundle_id="b",
    diff="--- a/notes.txt\n+++ b/notes.txt\n@@ -0,0 +1 @@\n+draft\n",
    energy={"v": 0.0, "v_syn": 0.0, "v_str": 0.0, "v_log": 0.0, "v_boot": 0.0, "v_sheaf": 0.0},
    complexity=2,
    changes={"notes.txt": b"draft\n", "old.txt": None, "sub/more.txt": b"more\n"},
    base={"notes.txt": None, "old.txt": b"x", "sub/more.txt": None},
)


def _approver(answers: str, editor: object = None) -> tuple[TerminalApprover, io.StringIO]:
    err = io.StringIO()
    runner = editor if callable(editor) else (lambda argv: 0)
    approver = TerminalApprover(
        True, stdin=io.StringIO(answers), stderr=err, env={"EDITOR": "ed -s"}, editor_runner=runner
    )
    return approver, err


def test_editor_command_prefers_visual_then_editor_then_vi() -> None:
    assert editor_command({"VISUAL": "code -w", "EDITOR": "nano"}) == ["code", "-w"]
    assert editor_command({"VISUAL": "", "EDITOR": "nano"}) == ["nano"]
    assert editor_command({}) == ["vi"]


def test_edit_files_returns_only_what_changed_and_removed_files_as_deletions() -> None:
    seen: list[list[str]] = []

    def editor(argv: list[str]) -> int:
        seen.append(argv)
        Path(argv[-2]).write_bytes(b"edited\n")  # notes.txt (sorted before sub/more.txt)
        return 0

    assert edit_files(REQUEST.changes, ["ed"], editor) == {"notes.txt": b"edited\n"}
    assert seen[0][0] == "ed" and [Path(a).name for a in seen[0][1:]] == ["notes.txt", "more.txt"]

    def remover(argv: list[str]) -> int:
        Path(argv[-1]).unlink()
        return 0

    assert edit_files(REQUEST.changes, ["ed"], remover) == {"sub/more.txt": None}


def test_a_failing_editor_changes_nothing() -> None:
    def broken(argv: list[str]) -> int:
        Path(argv[-1]).write_bytes(b"half")
        return 1

    assert edit_files(REQUEST.changes, ["ed"], broken) is None


async def test_keys_make_their_decisions() -> None:
    approver, _ = _approver("y\n")
    assert (await approver.review(REQUEST)) == _decision(approved=True)
    approver, _ = _approver("n\nnot like this\n")
    assert (await approver.review(REQUEST)) == _decision(feedback="not like this")
    approver, err = _approver("c\n\nc\nuse tabs\n")  # an empty correction asks again
    assert (await approver.review(REQUEST)) == _decision(feedback="use tabs", correction=True)
    assert "No correction given." in err.getvalue()


async def test_diff_and_help_then_ask_again() -> None:
    approver, err = _approver("d\n?\ny\n")
    assert (await approver.review(REQUEST)) == _decision(approved=True)
    assert "+draft" in err.getvalue() and "e  edit the proposed files" in err.getvalue()
    assert err.getvalue().count("Approve node-1?") == 3


async def test_edit_returns_the_edits_and_an_unchanged_edit_asks_again() -> None:
    def editor(argv: list[str]) -> int:
        Path(argv[-2]).write_bytes(b"mine\n")  # notes.txt
        return 0

    approver, _ = _approver("e\n", editor)
    decision = await approver.review(REQUEST)
    assert decision is not None and decision.edits == {"notes.txt": b"mine\n"}
    assert decision.approved is False
    approver, err = _approver("e\ny\n")  # the editor saved nothing new
    assert (await approver.review(REQUEST)) == _decision(approved=True)
    assert "No file was changed." in err.getvalue()


async def test_end_of_input_means_nobody_can_decide() -> None:
    approver, _ = _approver("")
    assert await approver.review(REQUEST) is None
    approver, _ = _approver("n\n")  # at the reason: not a rejection without one
    assert await approver.review(REQUEST) is None
    approver, _ = _approver("c\n")  # at the correction
    assert await approver.review(REQUEST) is None


class _Terminal(io.StringIO):
    """A terminal's input: Ctrl-D ends one read, and the next read waits for more lines."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines

    def readline(self, size: int | None = -1) -> str:
        return self.lines.pop(0) if self.lines else ""


async def test_ctrl_d_at_any_question_decides_nothing_even_if_more_input_follows() -> None:
    for first in (["n\n"], ["c\n"], ["h\n"], ["h\n", "y\n", "n\n"]):
        stdin = _Terminal([*first, "", "y\n", "y\n", "y\n"])  # "" is the Ctrl-D
        approver = TerminalApprover(True, stdin=stdin, stderr=io.StringIO(), env={})
        assert await approver.review(REQUEST) is None, first
        assert stdin.lines == ["y\n", "y\n", "y\n"]  # nothing read after the Ctrl-D
    approver, _ = _approver("n\n\n")  # an empty reason is a rejection without one
    assert await approver.review(REQUEST) == _decision()
    assert await approver.approve_command("node-1", "make install") is False
    approver, _ = _approver("y\n")
    assert await approver.approve_command("node-1", "make install") is True


async def test_without_a_terminal_nothing_is_asked() -> None:
    approver = TerminalApprover(False, stdin=io.StringIO("y\n"), stderr=io.StringIO())
    assert await approver.review(REQUEST) is None
    assert await approver.approve_command("node-1", "make") is False


def _decision(approved: bool = False, feedback: str = "", correction: bool = False) -> Decision:
    return Decision(approved=approved, actor="user", feedback=feedback, correction=correction)


async def test_the_prompt_shows_control_characters_as_escapes() -> None:
    """A node id, title, path or command that reached the prompt cannot drive the terminal."""
    from dataclasses import replace

    request = replace(
        REQUEST,
        node_id="node\x1b[2J",
        title="Notes\x1b]0;owned\x07",
        changes={"no\rtes.txt": b"x\x1b[2J\n"},
        diff="+x\x1b[2J\n",
    )
    approver, err = _approver("d\n\n")
    assert await approver.review(request) is None
    await approver.approve_command("node\x1b[2J", "rm -rf /\x1b[1A")
    shown = err.getvalue()
    assert "\x1b" not in shown and "\x07" not in shown and "\r" not in shown
    assert "node\\x1b[2J: Notes\\x1b]0;owned\\x07" in shown
    assert "no\\rtes.txt" in shown and "+x\\x1b[2J" in shown
