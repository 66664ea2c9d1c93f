"""Time to resume a session with 200 nodes of history (issue 3, must-show 4).

Setup (once): a real ``keel agent`` session against the fake OpenAI server (tests/fakes) with
a plan of 201 nodes: 200 independent nodes that each write one file, and ``node-201`` that
depends on all of them. ``--max-steps 202`` lets the plan, the speculation and the 200 actuator
calls through and stops the session before node-201's call (exit 3): the store then holds the
plan, 202 recorded steps, 200 attempts with their energy and evidence, node transitions and
events, and git holds 200 ledger commits.

Measurement: ``keel resume --last -y --max-steps 1000`` on a fresh copy of that workspace, from
the start of the command to the moment the fake server receives the first NEW model request
(node-201's actuator call; everything before it is replayed from the store or read from git).

- in-process: ``keel.cli.main([...])`` in this process, the code path of the console script,
  with Keel and the OpenAI SDK already imported (as in the long-running language server);
- subprocess: ``python -m keel resume ...``, including interpreter start-up and imports.

Run: ``.venv/bin/python bench/resume.py [RUNS]`` (prints figures; no assertions).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes.model_server import FakeModelServer

import keel.providers.openai_provider  # noqa: F401  (imported up front, see above)
from keel.cli import main as keel_main

NODES = 200
KEEL = [sys.executable, "-m", "keel"]
TASK = "Write two hundred notes and a summary"
MODEL = "openai:gpt-4.1"


def _node(node_id: str, path: str, depends_on: list[str]) -> dict[str, Any]:
    return {
        "id": node_id,
        "title": f"Note {node_id}",
        "kind": "code",
        "owns": [path],
        "context": [],
        "depends_on": depends_on,
        "commands": [],
        "contract": {"symbols": [], "forbidden": []},
    }


def entries() -> list[dict[str, Any]]:
    ids = [f"node-{n:03d}" for n in range(1, NODES + 1)]
    nodes = [_node(i, f"notes/{i}.txt", []) for i in ids]
    nodes.append(_node(f"node-{NODES + 1}", "summary.txt", ids))
    usage = {"input_tokens": 500, "output_tokens": 50}
    out: list[dict[str, Any]] = [
        {"tier": "architect", "node": None, "attempt": 1, "reply": {"nodes": nodes}},
        {"tier": "speculator", "node": None, "attempt": 1, "reply": {"hints": []}},
    ]
    for node in nodes:
        path = node["owns"][0]
        bundle = {"writes": [{"path": path, "content": f"{node['id']}\n"}], "commands": []}
        out.append({"tier": "actuator", "node": node["id"], "attempt": 1, "reply": bundle})
    return [{**entry, "usage": usage} for entry in out]


def env_for(server: FakeModelServer, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(
        OPENAI_API_KEY="sk-bench-not-a-real-key-0123456789",
        OPENAI_BASE_URL=server.openai_base_url,
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
    )
    return env


def build_history(root: Path, server: FakeModelServer, env: dict[str, str]) -> Path:
    workspace = root / "template"
    workspace.mkdir()
    git = ["git", "-C", str(workspace)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    (workspace / "README.md").write_text("# Notes\n")
    ident = ["-c", "user.name=Bench", "-c", "user.email=bench@example.com"]
    subprocess.run([*git, "add", "README.md"], check=True)
    subprocess.run([*git, *ident, "commit", "-qm", "initial"], check=True)
    started = time.perf_counter()
    budget = ["--max-steps", str(NODES + 2)]
    proc = subprocess.run(
        [*KEEL, "agent", "-y", "--json", "--model", MODEL, *budget, "-w", str(workspace), TASK],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 3:
        raise SystemExit(f"setup session ended {proc.returncode}:\n{proc.stderr[-2000:]}")
    print(f"setup: a {NODES + 1}-node session stopped by --max-steps in {elapsed:.1f} s")
    describe(workspace)
    return workspace


def describe(workspace: Path) -> None:
    with sqlite3.connect(workspace / ".keel" / "keel.db") as db:
        counts = {
            table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("steps", "attempts", "node_transitions", "events", "model_calls")
        }
        committed = db.execute("SELECT count(*) FROM nodes WHERE state = 'committed'").fetchone()
    commits = subprocess.run(
        ["git", "-C", str(workspace), "rev-list", "--count", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    rows = ", ".join(f"{n} {table}" for table, n in counts.items())
    print(f"history: {committed[0]} nodes committed, {commits} git commits; store: {rows}")


class FirstRequest:
    """Notes when the fake server has received ``n`` requests (in a watcher thread)."""

    def __init__(self, server: FakeModelServer, n: int) -> None:
        self.at: float | None = None
        self._thread = threading.Thread(target=self._watch, args=(server, n), daemon=True)
        self._thread.start()

    def _watch(self, server: FakeModelServer, n: int) -> None:
        server.wait_for_requests(n, timeout=120)
        self.at = time.perf_counter()

    def join(self) -> float:
        self._thread.join()
        assert self.at is not None
        return self.at


def resume_args(workspace: Path) -> list[str]:
    return ["resume", "--last", "-y", "--json", "--max-steps", "1000", "-w", str(workspace)]


def in_process(workspace: Path, server: FakeModelServer, env: dict[str, str]) -> float:
    watcher = FirstRequest(server, len(server.requests) + 1)
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            started = time.perf_counter()
            status = keel_main(resume_args(workspace))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if status != 0:
        raise SystemExit(f"in-process resume ended {status}")
    return watcher.join() - started


def as_subprocess(workspace: Path, server: FakeModelServer, env: dict[str, str]) -> float:
    watcher = FirstRequest(server, len(server.requests) + 1)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "keel", *resume_args(workspace)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"resume ended {proc.returncode}:\n{proc.stderr[-2000:]}")
    return watcher.join() - started


def phases(workspace: Path) -> dict[str, float]:
    """Milliseconds from ``session_resumed`` to the plan and to node-201's start (store)."""
    with sqlite3.connect(workspace / ".keel" / "keel.db") as db:
        rows = db.execute("SELECT type, payload FROM events ORDER BY id").fetchall()
    resumed = [i for i, (kind, _) in enumerate(rows) if kind == "session_resumed"][-1]
    stamps: dict[str, float] = {}
    for kind, payload in rows[resumed:]:
        event = json.loads(payload)
        key = "started" if kind == "node_started" else kind
        if key in ("session_resumed", "plan_ready", "started") and key not in stamps:
            stamps[key] = _seconds(event["ts"])
    base = stamps["session_resumed"]
    return {k: round((v - base) * 1000, 1) for k, v in stamps.items() if k != "session_resumed"}


def _seconds(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def summary(label: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"{label}: median {statistics.median(ms):.0f} ms (min {min(ms):.0f}, max {max(ms):.0f},"
        f" {len(ms)} runs)"
    )


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory(prefix="keel-bench-resume-") as tmp:
        root = Path(tmp)
        with FakeModelServer(entries()) as server:
            env = env_for(server, root)
            template = build_history(root, server, env)
            first = in_process(
                shutil.copytree(template, root / "first", symlinks=True), server, env
            )
            warm, subproc, split = [], [], []
            for n in range(runs):
                copy = shutil.copytree(template, root / f"in-{n}", symlinks=True)
                warm.append(in_process(copy, server, env))
                split.append(phases(copy))
                copy = shutil.copytree(template, root / f"sub-{n}", symlinks=True)
                subproc.append(as_subprocess(copy, server, env))
    print(
        f"resume to the first new model call, in-process, first in this process: "
        f"{first * 1000:.0f} ms"
    )
    print(summary("resume to the first new model call, in-process", warm))
    print(summary("resume to the first new model call, subprocess", subproc))
    plan = statistics.median(s["plan_ready"] for s in split)
    started = statistics.median(s["started"] for s in split)
    print(
        f"inside the session (median): plan replayed {plan:.0f} ms and node-{NODES + 1} "
        f"started {started:.0f} ms after the session_resumed event"
    )


if __name__ == "__main__":
    main()
