"""Hunk review on the terminal (``h``): the walk, the decisions it sends, and end of input.

Scripted stdin (StringIO) answers; the hunk ids are checked against ``bundle_hunks``, the ids
the engine, the editor and the API use. The walk through the real engine and git is in
tests/integration/test_terminal_hunks.py.
"""

from __future__ import annotations

import io
from dataclasses import replace

from keel.bundles.hunks import bundle_hunks, split
from keel.engine.ports import ApprovalRequest, Decision, Settlement
from keel.terminal import HUNK_HELP, TerminalApprover

BASE = b"def add(a, b):\n    return a + b\n\n\nVERSION = 1\n"
AFTER = b"def add(a: int, b: int) -> int:\n    return a + b\n\n\nVERSION = 2\n"
ENERGY = {"v": 0.0, "v_syn": 0.0, "v_str": 0.0, "v_log": 0.0, "v_boot": 0.0, "v_sheaf": 0.0}


def _request(
    changes: dict[str, bytes | None],
    base: dict[str, bytes | None],
    bundle_id: str = "b1",
    node_id: str = "node-1",
) -> ApprovalRequest:
    return ApprovalRequest(
        session_id="s",
        node_id=node_id,
        title="Type and bump",
        bundle_id=bundle_id,
        diff="(diff)\n",
        energy=ENERGY,
        complexity=1,
        changes=changes,
        base=base,
    )


TWO = _request({"calc.py": AFTER}, {"calc.py": BASE})
# Three hunks: calc.py's two, then a new file.
THREE = _request({"calc.py": AFTER, "notes.txt": b"typed\n"}, {"calc.py": BASE, "notes.txt": None})


def _ids(request: ApprovalRequest) -> list[str]:
    return [h.id for h in bundle_hunks(request.changes, request.base)]


def _rest(request: ApprovalRequest, committed: list[str], bundle_id: str) -> ApprovalRequest:
    """What the engine proposes again once ``committed`` hunks are in the ledger."""
    parts = split(request.changes, request.base, committed)
    return replace(request, bundle_id=bundle_id, changes=parts.rest, base=parts.rest_base)


def _approver(answers: str) -> tuple[TerminalApprover, io.StringIO, io.StringIO]:
    stdin, err = io.StringIO(answers), io.StringIO()
    return TerminalApprover(True, stdin=stdin, stderr=err, env={}), stdin, err


async def test_keep_one_reject_one_sends_the_approval_then_the_rejection_unasked() -> None:
    a, b = _ids(TWO)
    approver, stdin, err = _approver("h\ny\nn\nkeep VERSION at 1\n")
    first = await approver.review(TWO)
    assert first == Decision(approved=True, actor="user", hunks=[a])
    shown = err.getvalue()
    first_hunk = f"[1/2] calc.py @@ -1,1 +1,1 @@  hunk {a}\n-def add(a, b):\n+def add(a: int"
    assert first_hunk in shown
    assert f"[2/2] calc.py @@ -5,1 +5,1 @@  hunk {b}\n-VERSION = 1\n+VERSION = 2" in shown
    assert "Kept 1, rejected 1, undecided 0." in shown
    assert stdin.read() == ""  # every answer was used

    await approver.settled(TWO, Settlement("abc123", None, ["calc.py"]))
    rest = _rest(TWO, [a], "b2")
    assert _ids(rest) == [b]  # the same id after the commit
    second = await approver.review(rest)  # stdin is at its end: nothing is asked
    assert second == Decision(approved=False, actor="user", feedback="keep VERSION at 1", hunks=[b])
    assert f"Rejecting hunks {b} as you decided: keep VERSION at 1" in err.getvalue()
    # Once sent, it is gone: the next proposal is asked about (end of input: no decision).
    assert await approver.review(rest) is None


async def test_all_kept_or_all_rejected_are_whole_bundle_decisions() -> None:
    approver, _, _ = _approver("h\ny\nyes\n")
    assert await approver.review(TWO) == Decision(approved=True, actor="user")
    approver, _, _ = _approver("h\nn\nNO\ntoo much at once\n")
    assert await approver.review(TWO) == Decision(
        approved=False, actor="user", feedback="too much at once"
    )
    # A whole decision leaves nothing pending: the next proposal is asked about.
    await approver.settled(TWO, Settlement("abc", None, ["calc.py"]))
    assert await approver.review(_rest(TWO, [_ids(TWO)[0]], "b2")) is None


async def test_rejections_without_a_kept_hunk_are_sent_at_once() -> None:
    a, b, c = _ids(THREE)
    approver, _, _ = _approver("h\nn\nq\n\n")  # reject the first, stop, no reason
    assert await approver.review(THREE) == Decision(
        approved=False, actor="user", feedback="", hunks=[a]
    )
    approver, _, _ = _approver("h\nn\ny\nn\nnot the notes\n")  # a mix of all three
    assert await approver.review(THREE) == Decision(approved=True, actor="user", hunks=[b])
    await approver.settled(THREE, Settlement("sha", None, ["calc.py"]))
    assert await approver.review(_rest(THREE, [b], "b2")) == Decision(
        approved=False, actor="user", feedback="not the notes", hunks=[a, c]
    )


async def test_q_leaves_the_rest_undecided_and_nothing_decided_goes_back_to_the_menu() -> None:
    a, _, _ = _ids(THREE)
    approver, _, err = _approver("h\nq\ny\n")
    assert await approver.review(THREE) == Decision(approved=True, actor="user")
    assert "No hunk decided." in err.getvalue()
    assert err.getvalue().count("Approve node-1?") == 2
    assert "Reason" not in err.getvalue()  # nothing rejected: no reason asked

    approver, _, err = _approver("h\ny\nquit\n")
    assert await approver.review(THREE) == Decision(approved=True, actor="user", hunks=[a])
    assert "Kept 1, rejected 0, undecided 2." in err.getvalue()
    await approver.settled(THREE, Settlement("sha", None, ["calc.py"]))
    assert await approver.review(_rest(THREE, [a], "b2")) is None  # the rest is asked about


async def test_bad_keys_show_the_hunk_help_and_ask_again() -> None:
    approver, _, err = _approver("h\nx\n?\n\ny\ny\n")
    assert await approver.review(TWO) == Decision(approved=True, actor="user")
    shown = err.getvalue()
    assert shown.count(HUNK_HELP) == 3  # "x", "?" and an empty line
    assert shown.count("Keep this hunk? [y,n,q,?]: ") == 5
    assert "[1/2]" in shown and shown.count("[2/2]") == 1
    approver, _, err = _approver("x\nh\ny\ny\n")
    assert await approver.review(TWO) == Decision(approved=True, actor="user")
    assert "h  review hunk by hunk" in err.getvalue()  # the menu's help names the key


async def test_end_of_input_anywhere_in_the_walk_decides_nothing() -> None:
    for answers in ("h\n", "h\ny\n", "h\ny\nn\n", "h\nx\n"):
        approver, _, _ = _approver(answers)
        assert await approver.review(TWO) is None, answers
        # Nothing is left pending either: a later proposal of the node is asked about.
        await approver.settled(TWO, Settlement("sha", None, ["calc.py"]))
        assert await approver.review(_rest(TWO, [_ids(TWO)[0]], "b2")) is None


async def test_kept_hunks_that_cannot_be_committed_send_nothing_more() -> None:
    a, _ = _ids(TWO)
    approver, _, err = _approver("h\ny\nn\nno\ny\n")
    assert await approver.review(TWO) == Decision(approved=True, actor="user", hunks=[a])
    why = f"hunks {a} alone are not stable: V(x)=0.500 >= epsilon 0.01"
    await approver.settled(TWO, Settlement(None, why))
    assert "The hunks you rejected were not sent either; decide again." in err.getvalue()
    # The same bundle is asked about again, from the menu.
    assert await approver.review(TWO) == Decision(approved=True, actor="user")


async def test_a_pending_rejection_waits_for_its_own_node_and_its_own_hunks() -> None:
    a, _ = _ids(TWO)
    approver, _, err = _approver("h\ny\nn\nwhy\n")
    assert await approver.review(TWO) == Decision(approved=True, actor="user", hunks=[a])
    other = replace(TWO, node_id="node-2", bundle_id="o1")
    await approver.settled(other, Settlement("sha0", None, ["calc.py"]))  # another node's commit
    assert await approver.review(other) is None  # another node is asked, not answered
    await approver.settled(TWO, Settlement("sha1", None, ["calc.py"]))
    # The rest came back as something else (a new model attempt): the walk no longer holds.
    regenerated = _request({"calc.py": BASE + b"X = 1\n"}, {"calc.py": BASE}, "b3")
    assert await approver.review(regenerated) is None
    assert "This is not the rest of the bundle you reviewed; decide again." in err.getvalue()


async def test_hunks_show_escaped_lines_new_files_and_binary_sizes() -> None:
    request = _request(
        {
            "calc.py": b"x = 1\x1b[2J\n\ty\n",
            "img.bin": b"\xff\xfe\x00",
            "new\rname.txt": b"hello\x07\n",
        },
        {"calc.py": b"x = 0\n\ty\n", "img.bin": b"\x89PNG", "new\rname.txt": None},
    )
    one, two, three = _ids(request)
    approver, _, err = _approver("h\ny\ny\ny\n")
    assert await approver.review(request) == Decision(approved=True, actor="user")
    shown = err.getvalue()
    assert "\x1b" not in shown and "\x07" not in shown and "\r" not in shown
    assert f"[1/3] calc.py @@ -1,1 +1,1 @@  hunk {one}\n-x = 0\n+x = 1\\x1b[2J\n" in shown
    assert f"[2/3] img.bin @@ -1,1 +1,1 @@  hunk {two}\n  binary: 4 bytes -> 3 bytes\n" in shown
    assert f"[3/3] new\\rname.txt (new file) @@ -0,0 +1,1 @@  hunk {three}\n+hello\\x07\n" in shown


async def test_a_deleted_file_is_one_hunk_and_no_hunks_goes_back_to_the_menu() -> None:
    deleted = _request({"old.txt": None}, {"old.txt": b"a\nb\n"})
    approver, _, err = _approver("h\nn\ngone is wrong\n")
    assert await approver.review(deleted) == Decision(
        approved=False, actor="user", feedback="gone is wrong"
    )
    (gone,) = _ids(deleted)
    assert f"[1/1] old.txt (deleted) @@ -1,2 +0,0 @@  hunk {gone}\n-a\n-b\n" in err.getvalue()
    empty = _request({"same.txt": b"x\n"}, {"same.txt": b"x\n"})
    approver, _, err = _approver("h\ny\n")
    assert await approver.review(empty) == Decision(approved=True, actor="user")
    assert "The bundle has no hunks." in err.getvalue()


async def test_a_new_attempt_that_keeps_the_rejected_hunk_is_asked_about_not_rejected() -> None:
    """The rest failed verification on top of the commit and the model proposed again: its
    bundle holds the rejected hunk (same id) and more. It is not the rest: asked, not
    answered."""
    a, b = _ids(TWO)
    approver, _, err = _approver("h\ny\nn\nwhy\n")
    assert await approver.review(TWO) == Decision(approved=True, actor="user", hunks=[a])
    await approver.settled(TWO, Settlement("sha1", None, ["calc.py"]))
    rest = _rest(TWO, [a], "b2")
    more = replace(rest, bundle_id="b3", changes={**rest.changes, "extra.py": b"X = 1\n"})
    assert b in _ids(more) and len(_ids(more)) == 2
    assert await approver.review(more) is None  # asked (end of input), not rejected
    assert "Rejecting" not in err.getvalue()
