"""The API's approver: a bundle waits for its decision and leaves once it is settled."""

from __future__ import annotations

import asyncio

from keel.api.sessions import ApiApprover
from keel.engine.ports import ApprovalRequest, Decision, Settlement


def request(bundle: str = "b1") -> ApprovalRequest:
    return ApprovalRequest("s-1", "node-1", "Notes", bundle, "diff", {"v": 0.0}, 1)


async def waiting(approver: ApiApprover, bundle: str = "b1") -> asyncio.Task[Decision | None]:
    task = asyncio.create_task(approver.review(request(bundle)))
    await asyncio.sleep(0)  # one turn of the loop: the task runs up to its first await
    assert bundle in approver.pending  # registered before it waits (deterministic)
    return task


async def test_an_approval_stays_pending_until_it_is_settled() -> None:
    approver = ApiApprover()
    task = await waiting(approver)
    pending = approver.pending["b1"]
    pending.claimed = True
    pending.decision.set_result(Decision(approved=True, actor="api"))
    assert (await task) == Decision(approved=True, actor="api")
    assert "b1" in approver.pending and approver.undecided == []
    await approver.settled(request(), Settlement("abc123"))
    assert "b1" not in approver.pending
    assert pending.settlement.result().ledger_sha == "abc123"


async def test_a_rejection_leaves_at_once() -> None:
    approver = ApiApprover()
    task = await waiting(approver)
    approver.pending["b1"].decision.set_result(Decision(approved=False, feedback="no"))
    assert (await task) is not None
    assert approver.pending == {}


async def test_an_aborted_review_leaves_nothing_pending() -> None:
    approver = ApiApprover()
    task = await waiting(approver)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert approver.pending == {}


async def test_commands_outside_the_allow_list_are_refused() -> None:
    assert await ApiApprover().approve_command("node-1", "curl example.com") is False
