"""Runs the plan's DAG: every node starts as soon as its dependencies are committed.

Independent nodes run concurrently as asyncio tasks. A node that ends without a commit blocks
its descendants, which are reported as failed with the reason; unrelated nodes carry on. An
exception in a node (a budget stop, say) cancels the rest and propagates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

from keel.engine.models import NodeState
from keel.engine.replies import PlanNode


async def run_dag(
    nodes: Sequence[PlanNode],
    run_node: Callable[[PlanNode], Coroutine[Any, Any, NodeState]],
    on_blocked: Callable[[PlanNode, NodeState, str], Awaitable[None]],
    initial: Mapping[str, NodeState] | None = None,
) -> dict[str, NodeState]:
    """Run every node whose dependencies commit; return each node's final state."""
    states: dict[str, NodeState] = dict(initial or {})
    waiting = {node.id: node for node in nodes if node.id not in states}
    running: dict[asyncio.Task[NodeState], str] = {}
    try:
        while waiting or running:
            await _settle_blocked(waiting, states, on_blocked)
            for node in [n for n in waiting.values() if _ready(n, states)]:
                del waiting[node.id]
                running[asyncio.create_task(run_node(node), name=f"keel-node-{node.id}")] = node.id
            if not running:
                for node in waiting.values():  # dependencies that can never commit
                    states[node.id] = NodeState.FAILED
                    await on_blocked(node, NodeState.FAILED, "blocked: unknown dependency")
                break
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                states[running.pop(task)] = task.result()
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    return states


_STILL_PENDING = (NodeState.AWAITING_APPROVAL, NodeState.QUEUED)


def _ready(node: PlanNode, states: Mapping[str, NodeState]) -> bool:
    return all(states.get(dep) is NodeState.COMMITTED for dep in node.depends_on)


async def _settle_blocked(
    waiting: dict[str, PlanNode],
    states: dict[str, NodeState],
    on_blocked: Callable[[PlanNode, NodeState, str], Awaitable[None]],
) -> None:
    """Mark failed every waiting node with a dependency that ended without a commit."""
    changed = True
    while changed:
        changed = False
        for node in list(waiting.values()):
            dead = [
                d for d in node.depends_on if d in states and states[d] is not NodeState.COMMITTED
            ]
            if not dead:
                continue
            del waiting[node.id]
            pending = all(states[d] in _STILL_PENDING for d in dead)
            # Waiting on an approval is not a failure: the node stays queued for a resume.
            states[node.id] = NodeState.QUEUED if pending else NodeState.FAILED
            reason = "waiting for" if pending else "blocked: dependency did not commit:"
            await on_blocked(node, states[node.id], f"{reason} {', '.join(dead)}")
            changed = True
