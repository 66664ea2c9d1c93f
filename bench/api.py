"""Event delivery delay of the execution API's streams with 50 concurrent SSE clients (issue 13).

The server is the real development server (``python -m keel.api``) in its own process; the
clients are aiohttp streams in this process, all on one session's
``GET /api/v1/sessions/{id}/events``.

- external writer: this process writes events into the workspace's store the way a terminal's
  ``keel agent`` would (another process: the server reads them by polling the store every
  20 ms). Delay: from the end of each event's store transaction to its arrival at a client.
- API session: a real session started through the API (the small three-node session of the
  tests, ``yolo``, the fake model server behind the real SDK). The server's own sink wakes
  the stream right after each store write. Delay: from the event's ``ts`` (stamped *before*
  the store write, so the figure includes the write) to its arrival at a client.

Run: ``.venv/bin/python bench/api.py [CLIENTS] [EVENTS]`` (prints figures; no assertions).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes.model_server import FakeModelServer
from tests.integration.small_session import MODEL, TASK, init_workspace, keel_env, small_entries

from keel.engine.events import SessionFinished, SessionTotals, WarningEvent
from keel.store import SqliteStore

TOKEN = "bench-token-0123456789abcdef"


def drain(pipe: Any) -> None:
    """Keep reading the server's log, so it never blocks on a full pipe."""
    for raw in pipe:
        sys.stderr.write("server: " + raw.decode(errors="replace"))


def start_server(root: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "keel.api", "--port", "0", "-w", str(root)],
        env={**env, "KEEL_API_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    for raw in proc.stderr:
        line = raw.decode().strip()
        if "listening on " in line:
            threading.Thread(target=drain, args=(proc.stderr,), daemon=True).start()
            return proc, line.split("listening on ", 1)[1]
    raise SystemExit("the API server did not start")


async def stream(
    http: aiohttp.ClientSession,
    url: str,
    session: str,
    arrivals: list[tuple[dict[str, Any], float]],
    connected: list[float] | None = None,
    first: asyncio.Event | None = None,
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with http.get(f"{url}/sessions/{session}/events", headers=headers) as response:
        assert response.status == 200, await response.text()
        if connected is not None:
            connected.append(time.time())
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("data: "):
                arrivals.append((json.loads(line[6:]), time.time()))
                if first is not None:
                    first.set()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        sys.stderr.write("the server did not stop on SIGTERM; killed\n")
        proc.kill()
        proc.wait()


def report(label: str, delays_ms: list[float]) -> None:
    print(
        f"{label}: {len(delays_ms)} deliveries, p50 {statistics.median(delays_ms):.1f} ms, "
        f"p95 {percentile(delays_ms, 0.95):.1f} ms, max {max(delays_ms):.1f} ms"
    )


async def external_writer(clients: int, events: int, tmp: Path) -> None:
    root = tmp / "external"
    workspace = init_workspace(root / "ws")
    store = await SqliteStore.open(workspace)
    session = "s-bench-external"
    records = store.session(session)
    await records.create_session(TASK, {"mode": "yolo"})
    await records.begin_run(os.getpid(), socket.gethostname())
    proc, url = start_server(root, dict(os.environ))
    written: dict[int, float] = {}
    arrivals: list[list[tuple[dict[str, Any], float]]] = [[] for _ in range(clients)]
    try:
        async with aiohttp.ClientSession() as http:
            firsts = [asyncio.Event() for _ in arrivals]
            readers = [
                asyncio.create_task(stream(http, url, session, a, first=f))
                for a, f in zip(arrivals, firsts, strict=True)
            ]
            await records.record_event(WarningEvent(message="seq -1"))
            for first in firsts:  # every client is connected and has the first event
                await first.wait()
            for seq in range(events):
                await records.record_event(WarningEvent(message=f"seq {seq}"))
                written[seq] = time.time()
                await asyncio.sleep(0.01)
            await records.record_event(finished())
            await asyncio.wait_for(asyncio.gather(*readers), 120)
    finally:
        stop(proc)
        await store.close()
    delays = [
        (at - written[seq]) * 1000
        for client in arrivals
        for event, at in client
        if event["type"] == "warning" and (seq := int(event["message"].split()[1])) >= 0
    ]
    assert len(delays) == clients * events, "an event was lost"
    report(
        f"external writer, {clients} clients x {events} events (store polled every 20 ms)", delays
    )


def finished() -> SessionFinished:
    """The event that ends every stream of the session."""
    totals = SessionTotals(0, 0, 0, 0.0, 0, 0.0, 0, 0)
    return SessionFinished(
        outcome="success", reason="", budget_exceeded=False, totals=totals, nodes={}
    )


async def api_session(clients: int, tmp: Path) -> None:
    root = tmp / "session"
    workspace = init_workspace(root / "ws")
    # Every model reply takes 0.5 s, so all clients are connected before the nodes run.
    with FakeModelServer(small_entries(), latency_s=0.5) as model:
        proc, url = start_server(root, keel_env(model, tmp / "home"))
        arrivals: list[list[tuple[dict[str, Any], float]]] = [[] for _ in range(clients)]
        connected: list[float] = []
        try:
            async with aiohttp.ClientSession() as http:
                headers = {"Authorization": f"Bearer {TOKEN}"}
                body = {"task": TASK, "workspace": str(workspace), "model": MODEL, "mode": "yolo"}
                async with http.post(f"{url}/sessions", json=body, headers=headers) as response:
                    session = (await response.json())["id"]
                readers = [
                    asyncio.create_task(stream(http, url, session, a, connected)) for a in arrivals
                ]
                await asyncio.wait_for(asyncio.gather(*readers), 300)
        finally:
            stop(proc)
    live_from = max(connected)
    delays = []
    for client in arrivals:
        for event, at in client:
            stamped = datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp()
            if stamped >= live_from:  # earlier events were replayed, not delivered live
                delays.append((at - stamped) * 1000)
    live = len(delays) // clients
    report(f"API session, {clients} clients x {live} live events (ts to arrival)", delays)


async def main() -> None:
    clients = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    events = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    with tempfile.TemporaryDirectory() as tmp:
        await external_writer(clients, events, Path(tmp))
        await api_session(clients, Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
