"""What the bubblewrap sandbox costs (issue 11, must-show 4).

1. **Per command.** Keel's :class:`~keel.process.SubprocessRunner` runs the same command with
   and without the session's sandbox (``keel.sandbox.open_sandbox("auto", ...)``, the default
   options: network off, memory limit through ``prlimit``), alternating, ``COMMANDS`` times
   each: ``true`` (start-up cost alone) and ``python -c pass`` (Keel's interpreter, bound
   read-only from under ``/root``). The added time per command is the difference of the
   medians; p90s are printed too. On a loaded machine the wall times mostly measure waiting
   for a CPU (bwrap is three processes), so the CPU time the command's process tree used
   (user + system, from ``RUSAGE_CHILDREN``) is printed as well: that is the figure an idle
   machine approaches.
2. **Per node.** ``keel demo`` (4 nodes, real ``ty`` over LSP and ``pytest``, a transcript
   that answers instantly) with the sandbox on and with ``KEEL_SANDBOX=off``, alternating;
   the added time per node is the difference of the median wall times divided by the 6
   verified attempts' nodes (4 nodes, one of them retried, and the final whole-workspace check
   count as 6 verifications).

Run: ``.venv/bin/python bench/sandbox_overhead.py [RUNS]`` (prints figures; no assertions).
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keel.process import SubprocessRunner
from keel.sandbox import SandboxOptions, open_sandbox

COMMANDS = 60
VERIFICATIONS = 6  # the demo: 4 nodes, node-4 twice, and the sheaf check
KEEL = [sys.executable, "-m", "keel"]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def per_command(root: Path) -> None:
    workspace = root / "ws"
    cwd = workspace / ".keel" / "sandboxes" / "s-bench" / "node-1" / "1"
    cwd.mkdir(parents=True)
    env = dict(os.environ)
    sandbox = open_sandbox("auto", workspace, SandboxOptions(memory_mb=8192), env)
    plain = SubprocessRunner(base_env=env)
    boxed = SubprocessRunner(base_env=env, sandbox=sandbox)
    for label, argv in (("true", ["true"]), ("python -c pass", [sys.executable, "-c", "pass"])):
        times: dict[str, list[float]] = {"plain": [], "sandboxed": []}
        cpu: dict[str, list[float]] = {"plain": [], "sandboxed": []}
        for _ in range(COMMANDS):
            for name, runner in (("plain", plain), ("sandboxed", boxed)):
                before = _children_cpu()
                started = time.perf_counter()
                result = await runner.run_argv(argv, cwd, timeout_s=30)
                times[name].append((time.perf_counter() - started) * 1000)
                cpu[name].append((_children_cpu() - before) * 1000)
                assert result.ok, result.output
        p, s = times["plain"], times["sandboxed"]
        cp, cs = cpu["plain"], cpu["sandboxed"]
        print(
            f"{label:16s} plain p50 {_p(p, 0.5):6.1f} ms p90 {_p(p, 0.9):6.1f} | "
            f"sandboxed p50 {_p(s, 0.5):6.1f} ms p90 {_p(s, 0.9):6.1f} | "
            f"added p50 {_p(s, 0.5) - _p(p, 0.5):5.1f} ms wall, "
            f"{_p(cs, 0.5) - _p(cp, 0.5):5.1f} ms CPU ({COMMANDS} runs each)"
        )


def demo_wall(root: Path, off: bool, run: int) -> float:
    workspace = root / f"demo-{'off' if off else 'on'}-{run}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    if off:
        env["KEEL_SANDBOX"] = "off"
    started = time.perf_counter()
    proc = subprocess.run(
        [*KEEL, "demo", "-w", str(workspace)], capture_output=True, text=True, env=env, check=False
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"demo failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def per_node(root: Path, runs: int) -> None:
    on: list[float] = []
    off: list[float] = []
    for run in range(runs):
        off.append(demo_wall(root, True, run))
        on.append(demo_wall(root, False, run))
    m_on, m_off = statistics.median(on), statistics.median(off)
    print(
        f"keel demo wall   sandbox off median {m_off:6.2f} s | on median {m_on:6.2f} s | "
        f"added {m_on - m_off:+.2f} s per session, "
        f"{(m_on - m_off) / VERIFICATIONS * 1000:+.0f} ms per verified node ({runs} runs each)"
    )
    print(f"  off: {', '.join(f'{t:.2f}' for t in off)}; on: {', '.join(f'{t:.2f}' for t in on)}")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    root = Path(tempfile.mkdtemp(prefix="keel-bench-sandbox-"))
    try:
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        asyncio.run(per_command(root))
        print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        per_node(root, runs)
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
