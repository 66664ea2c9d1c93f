"""A follow-up session's architect sees the session it continues (plan, ledger, outcome)."""

from __future__ import annotations

from keel.engine.planning import PreviousSession, with_previous


def test_the_task_is_unchanged_without_a_previous_session() -> None:
    assert with_previous("Add a flag", None) == "Add a flag"


def test_the_previous_plan_ledger_and_outcome_follow_the_task() -> None:
    previous = PreviousSession(
        session_id="s-1",
        task="Write the notes",
        outcome="partial",
        reason="not committed: node-2 (failed)",
        plan=["node-1: Notes (owns notes.txt)", "node-2: More (owns more.txt)"],
        ledger=["0123456789ab node-1 Notes: notes.txt"],
    )
    text = with_previous("Revise the notes", previous)
    assert text.startswith("Revise the notes\n\n")
    for expected in (
        "follows up session s-1",
        "Its task was: Write the notes",
        "Its outcome: partial (not committed: node-2 (failed))",
        "- node-2: More (owns more.txt)",
        "- 0123456789ab node-1 Notes: notes.txt",
    ):
        assert expected in text


def test_an_empty_previous_session_says_so() -> None:
    text = PreviousSession("s-2", "t", "failed").block()
    assert "(no plan was recorded)" in text and "(nothing)" in text
