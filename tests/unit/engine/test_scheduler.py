"""The DAG scheduler: concurrency, dependency order, blocking, and failure propagation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from keel.engine.models import NodeKind, NodeState
from keel.engine.replies import PlanNode
from keel.engine.scheduler import run_dag

TIMEOUT = 2.0  # only reached when the scheduler is broken (a deadlock)

RunNode = Callable[[PlanNode], Awaitable[NodeState]]


def _node(node_id: str, *depends_on: str) -> PlanNode:
    return PlanNode(
        id=node_id,
        title=node_id,
        kind=NodeKind.CODE,
        owns=[f"{node_id}.py"],
        depends_on=list(depends_on),
    )


class Blocked:
    """An on_blocked callback that records what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, NodeState, str]] = []

    async def __call__(self, node: PlanNode, state: NodeState, reason: str) -> None:
        self.calls.append((node.id, state, reason))


def _outcomes(outcomes: dict[str, NodeState], log: list[str]) -> RunNode:
    async def run(node: PlanNode) -> NodeState:
        log.append(node.id)
        return outcomes.get(node.id, NodeState.COMMITTED)

    return run


async def _run(
    nodes: list[PlanNode],
    run: RunNode,
    blocked: Blocked | None = None,
    initial: dict[str, NodeState] | None = None,
) -> dict[str, NodeState]:
    async def run_node(node: PlanNode) -> NodeState:
        return await run(node)

    return await asyncio.wait_for(
        run_dag(nodes, run_node, blocked or Blocked(), initial), timeout=TIMEOUT
    )


async def test_independent_nodes_run_concurrently() -> None:
    started = {"a": asyncio.Event(), "b": asyncio.Event()}
    other = {"a": "b", "b": "a"}

    async def run(node: PlanNode) -> NodeState:
        # Each node waits for the other to have started: sequential running would deadlock.
        started[node.id].set()
        await started[other[node.id]].wait()
        return NodeState.COMMITTED

    states = await _run([_node("a"), _node("b")], run)
    assert states == {"a": NodeState.COMMITTED, "b": NodeState.COMMITTED}


async def test_a_dependent_node_starts_only_after_its_dependency_commits() -> None:
    order: list[str] = []
    release_a = asyncio.Event()

    async def run(node: PlanNode) -> NodeState:
        order.append(f"{node.id}:start")
        if node.id == "a":
            await release_a.wait()
        order.append(f"{node.id}:end")
        return NodeState.COMMITTED

    async def release_later() -> None:
        # Let the scheduler run everything it can; b must not have started yet.
        for _ in range(20):
            await asyncio.sleep(0)
        order.append("released")
        release_a.set()

    releaser = asyncio.create_task(release_later())
    states = await _run([_node("b", "a"), _node("a"), _node("c", "a", "b")], run)
    await releaser

    assert order == ["a:start", "released", "a:end", "b:start", "b:end", "c:start", "c:end"]
    assert set(states.values()) == {NodeState.COMMITTED}


@pytest.mark.parametrize("outcome", [NodeState.FAILED, NodeState.ESCALATED])
async def test_a_failed_dependency_fails_its_descendants_and_others_still_run(
    outcome: NodeState,
) -> None:
    ran: list[str] = []
    blocked = Blocked()
    nodes = [_node("a"), _node("b", "a"), _node("c", "b"), _node("d"), _node("e", "d")]
    states = await _run(nodes, _outcomes({"a": outcome}, ran), blocked)

    assert states == {
        "a": outcome,
        "b": NodeState.FAILED,
        "c": NodeState.FAILED,
        "d": NodeState.COMMITTED,
        "e": NodeState.COMMITTED,
    }
    assert sorted(ran) == ["a", "d", "e"]
    assert sorted(blocked.calls) == [
        ("b", NodeState.FAILED, "blocked: dependency did not commit: a"),
        ("c", NodeState.FAILED, "blocked: dependency did not commit: b"),
    ]


async def test_a_dependency_awaiting_approval_leaves_descendants_queued() -> None:
    ran: list[str] = []
    blocked = Blocked()
    nodes = [_node("a"), _node("b", "a"), _node("c", "b"), _node("d")]
    states = await _run(nodes, _outcomes({"a": NodeState.AWAITING_APPROVAL}, ran), blocked)

    assert states == {
        "a": NodeState.AWAITING_APPROVAL,
        "b": NodeState.QUEUED,
        "c": NodeState.QUEUED,
        "d": NodeState.COMMITTED,
    }
    assert sorted(ran) == ["a", "d"]
    assert sorted(blocked.calls) == [
        ("b", NodeState.QUEUED, "waiting for a"),
        ("c", NodeState.QUEUED, "waiting for b"),
    ]


async def test_a_node_with_one_failed_and_one_pending_dependency_fails() -> None:
    blocked = Blocked()
    nodes = [_node("a"), _node("b"), _node("c", "a", "b")]
    outcomes = {"a": NodeState.FAILED, "b": NodeState.AWAITING_APPROVAL}
    states = await _run(nodes, _outcomes(outcomes, []), blocked)
    assert states["c"] is NodeState.FAILED


async def test_nodes_committed_before_a_resume_are_not_run_again() -> None:
    ran: list[str] = []
    nodes = [_node("a"), _node("b", "a")]
    states = await _run(nodes, _outcomes({}, ran), initial={"a": NodeState.COMMITTED})
    assert ran == ["b"]
    assert states == {"a": NodeState.COMMITTED, "b": NodeState.COMMITTED}


async def test_an_exception_in_one_node_cancels_the_others_and_propagates() -> None:
    b_started = asyncio.Event()
    cancelled: list[str] = []
    ran: list[str] = []

    async def run(node: PlanNode) -> NodeState:
        ran.append(node.id)
        if node.id == "a":
            await b_started.wait()
            raise RuntimeError("budget exhausted")
        if node.id == "b":
            b_started.set()
            try:
                await asyncio.Event().wait()  # forever, unless cancelled
            except asyncio.CancelledError:
                cancelled.append(node.id)
                raise
        return NodeState.COMMITTED

    with pytest.raises(RuntimeError, match="budget exhausted"):
        await _run([_node("a"), _node("b"), _node("c", "a")], run)
    assert cancelled == ["b"]
    assert "c" not in ran
