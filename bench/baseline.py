"""What the project's environment and the baseline add to a session (issue 11, items 3 and 4).

- *probe*: ``detect_environment`` on a workspace with a ``.venv`` (find the interpreter, ask
  it for its prefixes, ``sys.path`` and pytest), in this process;
- *baseline, measured*: the time between ``plan_ready`` and ``baseline`` in the events of a
  real ``keel agent`` session (replay transcript) on a repository with 20 test files (one
  test failing) and the plan's one file to check: an export of HEAD, the whole suite, the
  build check and the checker over that file;
- *baseline, reused*: the same in a second session at the same HEAD (the first committed
  nothing), where the stored baseline is read back and only the plan's new files checked.

Run: ``.venv/bin/python bench/baseline.py [RUNS]`` (prints figures; no assertions).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from keel.plugins.environment import detect_environment

KEEL = [sys.executable, "-m", "keel"]
TESTS = 20
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, env={**os.environ, **GIT_ENV})


def _repository(root: Path) -> None:
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    (root / "calc.py").write_text("def add(a: int, b: int) -> int:\n    return a + b\n")
    (root / "tests").mkdir()
    for index in range(TESTS):
        body = "assert 1 + 1 == 3" if index == 0 else f"assert add({index}, 1) == {index + 1}"
        text = f"from calc import add\n\n\ndef test_{index}() -> None:\n    {body}\n"
        (root / "tests" / f"test_{index}.py").write_text(text)
    _git(root, "add", ".")
    _git(root, "commit", "-qm", "bench repository")


def _transcript(path: Path) -> Path:
    node = {
        "id": "node-1",
        "title": "Broken add",
        "kind": "code",
        "owns": ["calc.py"],
        "context": [],
        "depends_on": [],
        "commands": [],
        "contract": {"symbols": [], "forbidden": []},
    }
    bundle = {"writes": [{"path": "calc.py", "content": "def add(a, b):\n    return a - b\n"}]}
    entries = [
        {"tier": "architect", "node": None, "attempt": 1, "reply": {"nodes": [node]}},
        {"tier": "speculator", "node": None, "attempt": 1, "reply": {"hints": []}},
        {"tier": "actuator", "node": "node-1", "attempt": 1, "reply": bundle},
    ]
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


def _baseline_seconds(workspace: Path, transcript: Path, home: Path) -> tuple[float, bool]:
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "cfg")}
    command = [*KEEL, "agent", "-y", "--json", "--max-attempts", "1"]
    command += ["--model", f"replay:{transcript}", "-w", str(workspace), "Break add"]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    at = {e["type"]: datetime.fromisoformat(e["ts"]) for e in events}
    reused = next(e["reused"] for e in events if e["type"] == "baseline")
    return (at["baseline"] - at["plan_ready"]).total_seconds(), reused


def main(runs: int) -> None:
    probes, measured, reused = [], [], []
    with tempfile.TemporaryDirectory(prefix="keel-bench-baseline-") as tmp:
        base = Path(tmp)
        venv_ws = base / "venv-ws"
        venv_ws.mkdir()
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv_ws / ".venv")])
        for _ in range(runs):
            start = time.perf_counter()
            asyncio.run(detect_environment(venv_ws, ["python"], dict(os.environ)))
            probes.append(time.perf_counter() - start)
        for run in range(runs):
            workspace = base / f"ws-{run}"
            _repository(workspace)
            transcript = _transcript(base / f"t-{run}.jsonl")
            first, was_reused = _baseline_seconds(workspace, transcript, base / "home")
            assert not was_reused
            measured.append(first)
            second, was_reused = _baseline_seconds(workspace, transcript, base / "home")
            reused.append(second if was_reused else float("nan"))

    def row(name: str, values: list[float], unit: float, suffix: str) -> str:
        return (
            f"{name:<26} median {statistics.median(values) * unit:8.1f} {suffix}"
            f"   min {min(values) * unit:8.1f}   max {max(values) * unit:8.1f}"
        )

    print(f"runs: {runs}; repository: {TESTS} test files (1 failing), 1 file to check")
    print(row("probe (.venv)", probes, 1000, "ms"))
    print(row("baseline, measured", measured, 1000, "ms"))
    print(row("baseline, reused", reused, 1000, "ms"))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
