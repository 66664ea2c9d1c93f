"""Whole-process start-up of the ``keel`` command (issue 16): what a person waits for.

Each figure is a fresh process of the installed console script (``bin/keel`` beside the
interpreter), timed from spawn:

- ``keel --help``;
- ``keel status`` and ``keel ledger --recent`` on a workspace holding one stopped session
  (three nodes, one committed);
- ``keel resume --last -y`` to the first NEW model request, as the fake OpenAI server
  (tests/fakes) receives it; each run resumes a fresh copy of the stopped workspace.

For the three reading commands it also prints the CPU time (user + system of the process and
its children, from ``getrusage``), which a shared machine disturbs far less than wall time.

Setup (once): a real ``keel agent`` session of the small three-node plan of
``tests/integration/small_session.py`` against the fake server, stopped by ``--max-steps 3``
after node-1's bundle (exit 3), so ``resume`` continues with node-2's actuator call.

``--python PATH`` times another installation (for "before" figures, the main checkout's
``.venv/bin/python``); the fake server and the setup always come from this checkout.

Run: ``.venv/bin/python bench/startup.py [RUNS] [--python PATH]`` (prints figures; asserts
nothing). The medians are what docs/benchmarks.md records; the machine is shared, so take
several runs and say how loaded it was (``os.getloadavg`` is printed).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes.model_server import FakeModelServer
from tests.integration.small_session import MODEL, TASK, init_workspace, keel_env, small_entries


def keel_script(python: Path) -> list[str]:
    script = python.parent / "keel"
    return [str(script)] if script.exists() else [str(python), "-m", "keel"]


def timed(command: Sequence[str], env: Mapping[str, str]) -> tuple[float, float]:
    """Wall seconds, and CPU seconds (user + system, the process and its children such as
    git): the CPU figure moves much less than the wall one when the machine is shared."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(command, env=dict(env), capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} ended {proc.returncode}:\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def stopped_session(root: Path, keel: list[str], env: Mapping[str, str]) -> Path:
    workspace = init_workspace(root / "template")
    command = [*keel, "agent", "-y", "--json", "--model", MODEL, "--max-steps", "3"]
    proc = subprocess.run(
        [*command, "-w", str(workspace), TASK],
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 3:
        raise SystemExit(f"setup session ended {proc.returncode}:\n{proc.stderr[-2000:]}")
    return workspace


def first_request(
    server: FakeModelServer, keel: list[str], workspace: Path, env: Mapping[str, str]
) -> float:
    """Seconds from spawning ``keel resume`` to the fake server's next request."""
    seen: list[float] = []
    expected = len(server.requests) + 1

    def watch() -> None:
        server.wait_for_requests(expected, timeout=120)
        seen.append(time.perf_counter())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.perf_counter()
    command = [
        *keel,
        "resume",
        "--last",
        "-y",
        "--json",
        "--max-steps",
        "100",
        "-w",
        str(workspace),
    ]
    proc = subprocess.run(command, env=dict(env), capture_output=True, text=True, check=False)
    watcher.join()
    if proc.returncode != 0 or not seen:
        raise SystemExit(f"resume ended {proc.returncode}:\n{proc.stderr[-2000:]}")
    return seen[0] - started


def summary(label: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return (
        f"{label:<34} median {statistics.median(ms):6.0f} ms  (min {ms[0]:.0f}, "
        f"max {ms[-1]:.0f}, {len(ms)} runs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="?", type=int, default=7)
    parser.add_argument("--python", type=Path, default=Path(sys.executable))
    args = parser.parse_args()
    keel = keel_script(args.python)
    print(f"keel: {' '.join(keel)}; load average {os.getloadavg()[0]:.1f} at the start")
    with tempfile.TemporaryDirectory(prefix="keel-bench-startup-") as tmp:
        root = Path(tmp)
        with FakeModelServer(small_entries()) as server:
            env = keel_env(server, root)
            template = stopped_session(root, keel, env)
            figures: dict[str, list[float]] = {}
            ws = ["-w", str(template)]
            reading = {
                "keel --help": ["--help"],
                "keel status": ["status", *ws],
                "keel ledger --recent": ["ledger", "--recent", *ws],
            }
            for n in range(args.runs):
                for label, argv in reading.items():
                    wall, cpu = timed([*keel, *argv], env)
                    figures.setdefault(label, []).append(wall)
                    figures.setdefault(f"{label} (CPU)", []).append(cpu)
                figures.setdefault("keel resume to the first request", [])
                copy = shutil.copytree(template, root / f"resume-{n}", symlinks=True)
                figures["keel resume to the first request"].append(
                    first_request(server, keel, copy, env)
                )
    for label, values in figures.items():
        print(summary(label, values))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
