"""``keel dashboard`` under load: page latency with 1,000 sessions and 100,000 model calls in
one store, and the delay from a store write to the browser (issue 12, must-show 3).

Setup: a synthesised store (the real schema, created by ``keel.store``, then filled with
``sqlite3``): 1,000 sessions of 4 nodes each (plan, node states and transitions, 6 attempts
with energy and evidence, 3 approvals, 10 events), 80 model calls per session for 999 of them
and 20,080 for the newest (100,000 calls in all; prompt and reply previews stored), and one
``runs`` row per session. The real ``keel dashboard`` runs as its own process on loopback.

Measurements:

- page latency: sequential GETs of each page (the overview with 1,000 sessions, and every tab
  of the newest session: DAG, energy, model calls first and last page of 20,080 calls,
  sandboxes, decisions, ledger, a node's detail), from request to the last byte; p50 and p95;
- SSE delay: headless chromium (Debian's, through Playwright) shows a session page; a process
  commits a node state change to the store (as a running session does); the figure is the
  time from the commit to the page's EventSource receiving ``change``, and to the page's
  content being swapped (``keel:updated``). Clocks: both on this machine, in milliseconds.

Run: ``.venv/bin/python bench/dashboard.py [REQUESTS_PER_PAGE] [SSE_ROUNDS]`` (prints figures;
asserts nothing).
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.dashboard_sessions import CHROMIUM, Dashboard, home_env

from keel.dashboard.server import workspace_key
from keel.store import SqliteStore

SESSIONS = 1000
CALLS = 100_000
BIG = 20_080
NODES = 4


def synthesise(workspace: Path) -> str:
    """Fill ``workspace``'s store; returns the newest session's id."""
    db_path = workspace / ".keel" / "keel.db"

    async def create() -> None:
        store = await SqliteStore.open(db_path)
        await store.close()

    asyncio.run(create())
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")
    db.execute("BEGIN")
    config = json.dumps({"mode": "balanced", "epsilon": 0.1, "max_cost": 5.0, "max_steps": 200})
    newest = ""
    prompt = "You are the actuator. " * 40
    reply = '{"writes": [{"path": "src/x.py", "content": "..."}]} ' * 10
    for i in range(SESSIONS):
        sid = f"s-20261201-{i:06d}-bench"
        newest = sid
        started = f"2026-12-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}+00:00"
        outcome = ("success", "partial", "failed", "aborted")[i % 4]
        count = BIG if i == SESSIONS - 1 else (CALLS - BIG) // (SESSIONS - 1)
        totals = json.dumps(
            {
                "reason": "",
                "calls": count,
                "input_tokens": 1200 * count,
                "output_tokens": 300 * count,
                "cost_usd": 0.0048 * count,
                "unpriced": 0,
            }
        )
        db.execute(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?)",
            (sid, f"Task number {i}: build the thing", config, started, started, outcome, totals),
        )
        nodes = [
            {
                "id": f"node-{n}",
                "title": f"Node {n}",
                "kind": "code",
                "owns": [f"src/m{n}.py"],
                "depends_on": [f"node-{n - 1}"] if n > 1 else [],
            }
            for n in range(1, NODES + 1)
        ]
        db.execute(
            "INSERT INTO plan (session_id, plan, created_at) VALUES (?, ?, ?)",
            (sid, json.dumps({"nodes": nodes}), started),
        )
        for n in nodes:
            db.execute(
                "INSERT INTO nodes VALUES (?, ?, ?, 'code', 'committed', ?)",
                (sid, n["id"], n["title"], started),
            )
            for state in ("running", "verifying", "committed"):
                db.execute(
                    "INSERT INTO node_transitions (session_id, node_id, state, detail, at)"
                    " VALUES (?, ?, ?, '', ?)",
                    (sid, n["id"], state, started),
                )
        for a, (nid, attempt) in enumerate(
            [
                ("node-1", 1),
                ("node-2", 1),
                ("node-2", 2),
                ("node-3", 1),
                ("node-4", 1),
                ("node-4", 2),
            ]
        ):
            energy = {
                "v_syn": 0.0,
                "v_str": 0.0,
                "v_log": 1.0 if attempt == 1 and a else 0.0,
                "v_boot": 0.0,
                "v_sheaf": 0.0,
                "v": 2.0 if attempt == 1 and a else 0.0,
            }
            evidence = [
                {
                    "component": "log",
                    "source": "pytest",
                    "message": "assert 1 == 2",
                    "magnitude": 1.0,
                    "path": "tests/test_x.py",
                    "line": 3,
                }
            ]
            bundle = {"writes": [{"path": f"src/{nid}.py", "content": "print('x')\n" * 20}]}
            db.execute(
                "INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sid,
                    nid,
                    attempt,
                    json.dumps(bundle),
                    json.dumps(energy),
                    json.dumps(evidence),
                    int(energy["v"] < 0.1),
                    started,
                ),
            )
        for n in range(1, 4):
            db.execute(
                "INSERT INTO approvals (session_id, node_id, decision, actor, ledger_sha, note, at)"
                " VALUES (?, ?, 'approved', 'balanced', ?, '', ?)",
                (sid, f"node-{n}", f"{i:08x}{n:032x}", started),
            )
        for e in range(10):
            payload = {
                "type": "verification",
                "node": f"node-{e % 4 + 1}",
                "attempt": 1,
                "v": 0.0,
                "stable": True,
                "evidence": [],
            }
            db.execute(
                "INSERT INTO events (session_id, type, payload, at) VALUES (?, ?, ?, ?)",
                (sid, "verification", json.dumps(payload), started),
            )
        db.execute(
            "INSERT INTO runs (session_id, pid, host, started_at, ended_at)"
            " VALUES (?, 1, 'h', ?, ?)",
            (sid, started, started),
        )
        db.executemany(
            "INSERT INTO model_calls (session_id, tier, model, node_id, attempt, input_tokens,"
            " output_tokens, cost_usd, latency_s, ok, prompt, response, prompt_chars,"
            " reply_chars, at) VALUES (?, 'actuator', 'openai:gpt-4.1', ?, 1, 1200, 300,"
            " 0.0048, 1.5, 1, ?, ?, 880, 520, ?)",
            [(sid, f"node-{c % 4 + 1}", prompt, reply, started) for c in range(count)],
        )
    db.execute("COMMIT")
    total = db.execute("SELECT count(*) FROM model_calls").fetchone()[0]
    db.close()
    print(f"store: {SESSIONS} sessions, {total} model calls, {db_path.stat().st_size / 1e6:.0f} MB")
    return newest


def fetch(url: str, token: str | None = None) -> float:
    start = time.perf_counter()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
        assert response.status == 200
    return (time.perf_counter() - start) * 1000


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def pages(url: str, workspace: Path, sid: str, n: int) -> None:
    base = f"{url}/w/{workspace_key(workspace.resolve())}/s/{sid}"
    last = -(-BIG // 100)
    targets = {
        "overview (1,000 sessions)": f"{url}/",
        "overview, status=failed": f"{url}/?status=failed",
        "DAG": f"{base}/dag",
        "energy": f"{base}/energy",
        "model calls, page 1 of 20,080": f"{base}/calls",
        f"model calls, page {last}": f"{base}/calls?page={last}",
        "sandboxes": f"{base}/sandboxes",
        "decisions": f"{base}/decisions",
        "ledger (no repository)": f"{base}/ledger",
        "node detail": f"{base}/node/node-2",
    }
    print(f"\npage latency, {n} sequential requests each (ms):")
    print(f"  {'page':36} {'p50':>7} {'p95':>7} {'max':>7}")
    for name, target in targets.items():
        fetch(target)  # warm
        times = [fetch(target) for _ in range(n)]
        print(
            f"  {name:36} {statistics.median(times):7.1f} {percentile(times, 0.95):7.1f}"
            f" {max(times):7.1f}"
        )


def api(url: str, sid: str, n: int, token: str) -> None:
    """The execution API that ``keel dashboard`` serves beside the pages (``/api/v1``)."""
    targets = {
        "GET /api/v1/sessions (1,000)": f"{url}/api/v1/sessions",
        "GET /api/v1/sessions/{id}": f"{url}/api/v1/sessions/{sid}",
        "GET /api/v1/sessions/{id}/events": f"{url}/api/v1/sessions/{sid}/events",
    }
    print(f"\nAPI latency, {n} sequential requests each (ms):")
    print(f"  {'request':36} {'p50':>7} {'p95':>7} {'max':>7}")
    for name, target in targets.items():
        fetch(target, token)  # warm
        times = [fetch(target, token) for _ in range(n)]
        print(
            f"  {name:36} {statistics.median(times):7.1f} {percentile(times, 0.95):7.1f}"
            f" {max(times):7.1f}"
        )


def sse_delay(url: str, workspace: Path, sid: str, rounds: int) -> None:
    from playwright.sync_api import sync_playwright

    db_path = workspace / ".keel" / "keel.db"
    page_url = f"{url}/w/{workspace_key(workspace.resolve())}/s/{sid}/dag"
    to_event: list[float] = []
    to_update: list[float] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page()
        page.goto(page_url)
        page.wait_for_selector("#live.on")
        page.evaluate(
            """() => {
              window.got = []; window.swapped = [];
              const s = new EventSource(document.getElementById('live').dataset.stream);
              s.addEventListener('change', () => window.got.push(Date.now()));
              document.addEventListener('keel:updated', () => window.swapped.push(Date.now()));
              return new Promise(r => s.addEventListener('ready', r));
            }"""
        )
        db = sqlite3.connect(db_path, isolation_level=None)
        for r in range(rounds):
            state = "running" if r % 2 == 0 else "committed"
            page.evaluate("() => { window.got = []; window.swapped = []; }")
            written = time.time() * 1000
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "UPDATE nodes SET state = ? WHERE session_id = ? AND node_id = 'node-4'",
                (state, sid),
            )
            db.execute(
                "INSERT INTO node_transitions (session_id, node_id, state, detail, at)"
                " VALUES (?, 'node-4', ?, '', '2026-12-01T00:00:00+00:00')",
                (sid, state),
            )
            db.execute("COMMIT")
            page.wait_for_function("() => window.got.length > 0 && window.swapped.length > 0")
            to_event.append(page.evaluate("window.got[0]") - written)
            to_update.append(page.evaluate("window.swapped[0]") - written)
            page.wait_for_selector(f'g.node[data-node="node-4"][data-state="{state}"]')
        db.close()
        browser.close()
    print(f"\nSSE delay, store commit -> browser, {rounds} writes (ms):")
    for name, values in (("EventSource 'change'", to_event), ("page content swapped", to_update)):
        print(
            f"  {name:24} p50 {statistics.median(values):6.0f}  p95 {percentile(values, 0.95):6.0f}"
            f"  max {max(values):6.0f}"
        )


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    print(f"keel dashboard benchmark, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        workspace = home / "ws"
        workspace.mkdir()
        start = time.perf_counter()
        sid = synthesise(workspace)
        print(f"synthesised in {time.perf_counter() - start:.1f}s")
        token = "bench-token-" + "0" * 16
        dashboard = Dashboard(home_env(home, KEEL_API_TOKEN=token), "-w", str(workspace))
        try:
            pages(dashboard.url, workspace, sid, n)
            api(dashboard.url, sid, n, token)
            sse_delay(dashboard.url, workspace, sid, rounds)
        finally:
            dashboard.stop()


if __name__ == "__main__":
    main()
