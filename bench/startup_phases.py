"""Where a session's start-up spends its CPU, phase by phase (issue 16).

``bench/startup.py`` times whole processes; this one opens them up. Each run is a ``keel``
process (the console script's code, ``keel.cli.main``) started through a small bootstrap that
notes, at the boundaries of the start-up's phases, the wall time since spawn and the CPU time
of the thread it runs in (``time.thread_time``) and of the process (``time.process_time``).
The model clients are built in their own thread, so the SDK's import is measured there. The
phases, to the moment the SDK hands the first request to its HTTP client:

- the interpreter's start-up and the bootstrap (it imports ``asyncio``, as Keel does anyway);
- ``keel.cli`` and the command up to the session (``resume``: opening the store, the trust
  context);
- importing ``keel.app``, ``keel.config`` and ``keel.terminal``;
- importing the SDK and its provider module, then building the client (client thread);
- the main thread meanwhile (the sandbox and environment probes, mostly waiting);
- opening the store and the ledger, and the engine up to the request.

Three sessions, against the test suite's fake model server: ``resume`` on ``openai:`` and on
``anthropic:`` (the stopped three-node session of ``bench/startup.py``) and ``agent`` on a new
workspace (its first request is the architect's). Bytecode is cached as in
``bench/startup.py``.

Run: ``.venv/bin/python bench/startup_phases.py [RUNS]`` (prints medians in ms; asserts
nothing). The figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.startup import ANTHROPIC_MODEL, stopped_session
from tests.fakes.model_server import FakeModelServer
from tests.integration.small_session import MODEL, TASK, init_workspace, keel_env, small_entries

#: Runs ``keel.cli.main`` with marks; writes them as JSON to the file named by argv[1].
BOOTSTRAP = r"""
import asyncio, functools, importlib, json, os, sys, threading, time
T0 = float(os.environ["KEEL_BENCH_T0"])
marks = []
def mark(name):
    marks.append((name, threading.current_thread().name, (time.time() - T0) * 1000,
                  time.thread_time() * 1000, time.process_time() * 1000))
mark("up")
from keel import cli
import keel.providers.registry as registry
sdk = os.environ["KEEL_BENCH_SDK"]

def patch_send():
    import httpx2
    send = httpx2.AsyncClient.send
    async def marked(self, *args, **kwargs):
        mark("request")
        return await send(self, *args, **kwargs)
    httpx2.AsyncClient.send = marked

def built_clients(original):
    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        mark("sdk import")
        importlib.import_module(f"keel.providers.{sdk}_provider")
        patch_send()
        mark("client build")
        try:
            return original(*args, **kwargs)
        finally:
            mark("clients built")
    return wrapper

run_agent = cli.run_agent
async def marked_agent(*args, **kwargs):
    mark("session")
    import keel.app, keel.config, keel.terminal
    mark("app imported")
    keel.app._built_clients = built_clients(keel.app._built_clients)
    open_services = keel.app.open_services
    def marked_services(*a, **k):
        mark("services")
        return open_services(*a, **k)
    keel.app.open_services = marked_services
    return await run_agent(*args, **kwargs)
cli.run_agent = marked_agent
try:
    status = cli.main(sys.argv[2:])
finally:
    with open(sys.argv[1], "w") as out:
        json.dump(marks, out)
sys.exit(status)
"""

PHASES = (
    ("interpreter and bootstrap (main)", None, "up"),
    ("keel.cli, the command up to the session (main)", "up", "session"),
    ("importing keel.app, keel.config, keel.terminal (main)", "session", "app imported"),
    ("importing the SDK and its provider (client thread)", "sdk import", "client build"),
    ("building the client (client thread)", "client build", "clients built"),
    ("meanwhile: probes, waiting for the client (main)", "app imported", "services"),
    ("store, ledger, engine up to the request (main)", "services", "request"),
)


def phases(marks: Sequence[Sequence[Any]]) -> dict[str, float]:
    """CPU ms of each phase (its thread's), the process's CPU and the wall time at the request."""
    first: dict[str, tuple[str, float, float, float]] = {}
    for name, thread, wall, thread_cpu, process_cpu in marks:
        first.setdefault(str(name), (str(thread), wall, thread_cpu, process_cpu))
    out = {}
    for label, start, end in PHASES:
        if start is None:
            out[label] = first[end][3]
        else:
            out[label] = first[end][2] - first[start][2]
    total = first["request"][3]
    out["other threads (aiosqlite, workers: agent's map and numpy)"] = total - sum(out.values())
    out["the process's CPU at the first request"] = total
    out["wall time to the first request"] = first["request"][1]
    return out


def run_once(
    command: Sequence[str], env: Mapping[str, str], sdk: str, out: Path, status: int
) -> dict[str, float]:
    spawned = {**env, "KEEL_BENCH_T0": repr(time.time()), "KEEL_BENCH_SDK": sdk}
    proc = subprocess.run(
        [sys.executable, "-c", BOOTSTRAP, str(out), *command],
        env=spawned,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != status:
        raise SystemExit(f"{' '.join(command)} ended {proc.returncode}:\n{proc.stderr[-2000:]}")
    return phases(json.loads(out.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="?", type=int, default=5)
    args = parser.parse_args()
    keel = [sys.executable, "-m", "keel"]
    print(f"load average {os.getloadavg()[0]:.1f} at the start")
    with tempfile.TemporaryDirectory(prefix="keel-bench-phases-") as tmp:
        root = Path(tmp)
        with FakeModelServer(small_entries()) as server:
            env = keel_env(
                server,
                root,
                ANTHROPIC_API_KEY="sk-ant-test-not-a-real-key-0123456789",
                ANTHROPIC_BASE_URL=server.anthropic_base_url,
                PYTHONPYCACHEPREFIX=str(root / "pycache"),
            )
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            openai = stopped_session(root, keel, env)
            anthropic = stopped_session(root, keel, env, ANTHROPIC_MODEL)
            resume = ["resume", "--last", "-y", "--json", "--max-steps", "100", "-w"]
            agent = ["agent", "-y", "--json", "--model", MODEL, "--max-steps", "1", TASK, "-w"]
            sessions = {
                "resume, openai": (resume, openai, "openai", 0),
                "resume, anthropic": (resume, anthropic, "anthropic", 0),
                "agent, openai": (agent, None, "openai", 3),
            }
            table: dict[str, dict[str, list[float]]] = {}
            for n in range(-1, args.runs):  # run -1 fills the bytecode cache, untimed
                for label, (argv, template, sdk, status) in sessions.items():
                    name = f"{n}-{label.replace(', ', '-')}"
                    if template is None:
                        workspace = init_workspace(root / name)
                    else:
                        workspace = shutil.copytree(template, root / name, symlinks=True)
                    figures = run_once([*argv, str(workspace)], env, sdk, root / "m.json", status)
                    if n >= 0:
                        for phase, value in figures.items():
                            table.setdefault(label, {}).setdefault(phase, []).append(value)
    for label, measured in table.items():
        print(f"\n{label} (ms, medians of {args.runs})")
        for phase, values in measured.items():
            print(f"  {phase:<56} {statistics.median(values):6.0f}  (min {min(values):.0f})")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
