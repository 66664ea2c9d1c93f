"""Whole-process start-up of the ``keel`` command (issue 16): what a person waits for.

Each figure is a fresh process of the installed console script (``bin/keel`` beside the
interpreter), timed from spawn:

- ``keel --help``;
- ``keel status`` and ``keel ledger --recent`` on a workspace holding one stopped session
  (three nodes, one committed);
- ``keel resume --last -y`` to the first NEW model request, as the fake OpenAI server
  (tests/fakes) receives it; each run resumes a fresh copy of the stopped workspace. The same
  on the ``anthropic:`` provider (its SDK is the heavier import);
- ``keel agent`` on a new workspace to its first model request (the architect's).

Every process finds its compiled bytecode in a cache of this run's own
(``PYTHONPYCACHEPREFIX``, filled by the untimed set-up), as an installed wheel does: with
``PYTHONDONTWRITEBYTECODE`` set and an editable install, every process would otherwise compile
the Keel modules it imports from source (about 0.1-0.2 s), which no installed ``keel`` pays.

Each figure comes with a CPU time, which a shared machine disturbs less than wall time (though
CPU time too swells when the cores are contended): for the three reading commands user + system
of the process and its children (``getrusage``); for the first-request ones the ``keel``
process's own, all threads, when the fake server receives the request (``/proc``).

Setup (once): a real ``keel agent`` session of the small three-node plan of
``tests/integration/small_session.py`` against the fake server, stopped by ``--max-steps 3``
after node-1's bundle (exit 3), so ``resume`` continues with node-2's actuator call.

``--python PATH`` times another installation (for "before" figures, the main checkout's
``.venv/bin/python``); given twice, the two installations are measured alternately, run by run,
so both see the same load. The fake server and the setup always come from this checkout.

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

ANTHROPIC_MODEL = "anthropic:claude-sonnet-4-5"


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


def stopped_session(
    root: Path, keel: list[str], env: Mapping[str, str], model: str = MODEL
) -> Path:
    workspace = init_workspace(root / f"template-{model.split(':')[0]}")
    command = [*keel, "agent", "-y", "--json", "--model", model, "--max-steps", "3"]
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


def cpu_of(pid: int) -> float | None:
    """User + system CPU seconds of a running process so far, all its threads (Linux
    ``/proc``, clock ticks); ``None`` if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_request(
    server: FakeModelServer,
    keel: list[str],
    workspace: Path,
    env: Mapping[str, str],
    command: Sequence[str] | None = None,
    status: int = 0,
) -> tuple[float, float]:
    """Seconds from spawning ``keel resume`` (or ``command``) to the fake server's next
    request, and the CPU seconds the ``keel`` process had used by then (its own, not its
    children's: the interpreter, Keel, the SDK)."""
    seen: list[tuple[float, float | None]] = []
    expected = len(server.requests) + 1
    resume = [*keel, "resume", "--last", "-y", "--json", "--max-steps", "100"]
    command = [*(command or resume), "-w", str(workspace)]
    started = time.perf_counter()
    proc = subprocess.Popen(
        command,
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def watch() -> None:
        server.wait_for_requests(expected, timeout=120)
        seen.append((time.perf_counter(), cpu_of(proc.pid)))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    _, stderr = proc.communicate()
    watcher.join()
    if proc.returncode != status or not seen or seen[0][1] is None:
        raise SystemExit(f"{' '.join(command)} ended {proc.returncode}:\n{stderr[-2000:]}")
    return seen[0][0] - started, seen[0][1]


def summary(label: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return (
        f"{label:<42} median {statistics.median(ms):6.0f} ms  (min {ms[0]:.0f}, "
        f"max {ms[-1]:.0f}, {len(ms)} runs)"
    )


def measure_once(
    n: int,
    name: str,
    keel: list[str],
    templates: Mapping[str, Path],
    server: FakeModelServer,
    env: Mapping[str, str],
    root: Path,
    figures: dict[str, list[float]],
) -> None:
    """One run of every measurement for one installation, into ``figures``."""
    ws = ["-w", str(templates["keel resume to the first request"])]
    reading = {
        "keel --help": ["--help"],
        "keel status": ["status", *ws],
        "keel ledger --recent": ["ledger", "--recent", *ws],
    }
    for label, argv in reading.items():
        wall, cpu = timed([*keel, *argv], env)
        figures.setdefault(label, []).append(wall)
        figures.setdefault(f"{label} (CPU)", []).append(cpu)
    runs: dict[str, tuple[Path, list[str] | None, int]] = {
        label: (shutil.copytree(t, root / f"{name}-{n}-{t.name}", symlinks=True), None, 0)
        for label, t in templates.items()
    }
    # --max-steps 1: the plan is its one call; the speculator's is then refused (exit 3)
    agent = [*keel, "agent", "-y", "--json", "--model", MODEL, "--max-steps", "1", TASK]
    runs["keel agent to the first request"] = (init_workspace(root / f"{name}-agent-{n}"), agent, 3)
    for label, (workspace, command, status) in runs.items():
        wall, cpu = first_request(server, keel, workspace, env, command, status)
        figures.setdefault(label, []).append(wall)
        figures.setdefault(f"{label} (CPU)", []).append(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="?", type=int, default=7)
    parser.add_argument(
        "--python",
        type=Path,
        action="append",
        help="an installation's interpreter (default: this one); given twice, the two are "
        "measured alternately, run by run, so both see the same load",
    )
    args = parser.parse_args()
    pythons: list[Path] = args.python or [Path(sys.executable)]
    keels = {f"[{i}] {p}": keel_script(p) for i, p in enumerate(pythons, start=1)}
    print(f"load average {os.getloadavg()[0]:.1f} at the start")
    figures: dict[str, dict[str, list[float]]] = {name: {} for name in keels}
    with tempfile.TemporaryDirectory(prefix="keel-bench-startup-") as tmp:
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
            templates: dict[str, dict[str, Path]] = {}
            for i, (name, keel) in enumerate(keels.items()):
                home = root / f"install-{i}"
                home.mkdir()
                templates[name] = {
                    "keel resume to the first request": stopped_session(home, keel, env),
                    "keel resume, anthropic": stopped_session(home, keel, env, ANTHROPIC_MODEL),
                }
                for template in templates[name].values():  # untimed: fills the bytecode cache
                    warm = shutil.copytree(template, home / f"warm-{template.name}", symlinks=True)
                    first_request(server, keel, warm, env)
            for n in range(args.runs):
                for name, keel in keels.items():
                    measure_once(n, name, keel, templates[name], server, env, root, figures[name])
    for name, measured in figures.items():
        print(f"keel: {name}")
        for label, values in measured.items():
            print(summary(label, values))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
