"""Engine overhead and concurrency, measured (issue 2, must-show 5).

1. The demo session with a transcript that answers instantly. Every call that reaches an
   external tool (model client, checker, test runner, commands, git) is timed through a thin
   proxy as an interval; Keel's own time is the wall time minus the union of those intervals
   (sensors of one node run concurrently, so intervals overlap), divided by the nodes.
2. Four independent nodes whose model replies each take 1 s (recorded ``delay_s``), run
   concurrently: the session's wall time, against 4 s if they ran one after another.

Run: ``.venv/bin/python bench/engine_overhead.py`` (prints figures; no assertions).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from keel.app import open_engine
from keel.cli import DEMO_TASK, demo_transcript
from keel.config import load_config
from keel.engine.events import Event
from keel.engine.ports import ApprovalRequest, Decision, Settlement


class Sink:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: Event) -> None:
        self.events.append(event.to_json())


class NoApprover:
    async def review(self, request: ApprovalRequest) -> Decision | None:
        return None

    async def approve_command(self, node_id: str, command: str) -> bool:
        return False

    async def settled(self, request: ApprovalRequest, settlement: Settlement) -> None:
        return None


class Clock:
    """Intervals of external work; ``covered`` is the length of their union."""

    def __init__(self) -> None:
        self.intervals: list[tuple[float, float]] = []

    def covered(self) -> float:
        total, end = 0.0, float("-inf")
        for start, stop in sorted(self.intervals):
            if stop > end:
                total += stop - max(start, end)
                end = stop
        return total


class Timed:
    """Wraps an adapter; every coroutine method call is recorded as an interval."""

    def __init__(self, inner: Any, clock: Clock) -> None:
        self._inner = inner
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if not asyncio.iscoroutinefunction(value):
            return value

        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await value(*args, **kwargs)
            finally:
                self._clock.intervals.append((start, time.perf_counter()))

        return timed


def _instant_demo_entries(path: Path) -> Path:
    lines = demo_transcript().read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.strip()]
    for entry in entries:
        entry.pop("delay_s", None)
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


async def demo_overhead(root: Path) -> dict[str, float]:
    workspace = root / "demo"
    workspace.mkdir()
    transcript = _instant_demo_entries(root / "demo.jsonl")
    env = dict(os.environ)
    config = load_config(workspace, env=env, flags={"model": f"replay:{transcript}"})
    clock = Clock()
    sink = Sink()
    async with open_engine(
        workspace, DEMO_TASK, config, sink=sink, approver=NoApprover(), auto_approve=True, env=env
    ) as engine:
        engine.clients = {tier: Timed(c, clock) for tier, c in engine.clients.items()}
        engine.plugins = [Timed(p, clock) for p in engine.plugins]
        engine.runner = Timed(engine.runner, clock)
        engine.ledger = Timed(engine.ledger, clock)
        start = time.perf_counter()
        result = await engine.run(DEMO_TASK)
        wall = time.perf_counter() - start
    assert result.outcome == "success", result.reason
    nodes = len(result.nodes)
    external = clock.covered()
    own = wall - external
    return {
        "wall_s": wall,
        "external_s": external,
        "own_s": own,
        "nodes": nodes,
        "own_ms_per_node": 1000 * own / nodes,
    }


def _independent_entries(path: Path, latency_s: float) -> Path:
    nodes = [
        {
            "id": f"node-{i}",
            "title": f"Note {i}",
            "kind": "code",
            "owns": [f"notes/{i}.txt"],
            "context": [],
            "depends_on": [],
            "commands": [],
            "contract": {"symbols": [], "forbidden": []},
        }
        for i in range(1, 5)
    ]
    entries: list[dict[str, Any]] = [
        {"tier": "architect", "node": None, "attempt": 1, "reply": {"nodes": nodes}}
    ]
    for node in nodes:
        entries.append(
            {
                "tier": "actuator",
                "node": node["id"],
                "attempt": 1,
                "delay_s": latency_s,
                "reply": {"writes": [{"path": node["owns"][0], "content": f"{node['title']}\n"}]},
            }
        )
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


async def concurrency(root: Path, latency_s: float = 1.0) -> dict[str, float]:
    workspace = root / "parallel"
    workspace.mkdir()
    transcript = _independent_entries(root / "parallel.jsonl", latency_s)
    env = dict(os.environ)
    config = load_config(workspace, env=env, flags={"model": f"replay:{transcript}"})
    config.engine.speculate = False
    sink = Sink()
    async with open_engine(
        workspace,
        "four notes",
        config,
        sink=sink,
        approver=NoApprover(),
        auto_approve=True,
        env=env,
    ) as engine:
        start = time.perf_counter()
        result = await engine.run("four notes")
        wall = time.perf_counter() - start
    assert result.outcome == "success", result.reason
    return {"wall_s": wall, "sequential_s": 4 * latency_s, "nodes": len(result.nodes)}


async def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    demo, parallel = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="keel-bench-") as tmp:
            demo.append(await demo_overhead(Path(tmp)))
        with tempfile.TemporaryDirectory(prefix="keel-bench-") as tmp:
            parallel.append(await concurrency(Path(tmp)))
    own = [d["own_ms_per_node"] for d in demo]
    print(f"demo session ({runs} runs, {demo[0]['nodes']} nodes, instant transcript)")
    print(f"  wall time           median {statistics.median(d['wall_s'] for d in demo):.2f} s")
    print(
        f"  external tools      median {statistics.median(d['external_s'] for d in demo):.2f} s"
        " (model client, ty, pytest, commands, git)"
    )
    print(
        f"  Keel's own time     median {statistics.median(own):.1f} ms per node "
        f"(min {min(own):.1f}, max {max(own):.1f}; target < 20)"
    )
    walls = [p["wall_s"] for p in parallel]
    print(f"4 independent nodes, 1 s model latency each ({runs} runs)")
    print(
        f"  wall time           median {statistics.median(walls):.2f} s "
        f"(min {min(walls):.2f}, max {max(walls):.2f}; target < 1.5, sequential 4.0)"
    )


if __name__ == "__main__":
    asyncio.run(main())
