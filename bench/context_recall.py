"""Context recall: does the architect's first request hold the code a real change needed?

For each case of the development set (``KEEL_CONTEXT_DEV``, default ``/work/shared/context-dev``;
its README gives the method), the workspace is laid out at the case's parent with that folder's
``make_dev_cases.workspace`` (imported at run time, never copied into Keel), and the real
``keel agent`` runs the case's task against the fake model server (tests/fakes) with
``--max-steps 1``: the architect is asked once and the session stops. The request exactly as
the server received it (system + user text) is scored with ``make_dev_cases.score``: path
recall, content recall and size (characters / 4) of the gold files, per repository and overall.

Then the map's build time: cold (no cache) and warm (a new map object over the disk cache, as a
new ``keel`` process finds it), and hot (the same object again, as in the language server),
on the largest dev workspace and on generated repositories of 5,000 and 50,000 files, with
the warm build's stages (inventory, index from the caches, ranking and rendering). Times are
in-process with the libraries already imported; the import cost is printed apart.

Run: ``.venv/bin/python bench/context_recall.py [--cases N] [--only SUBSTRING] [--no-timing]
[--no-recall]`` (``--no-recall``: the build times only)
(prints figures; no assertions). Case workspaces are kept in ``KEEL_BENCH_DIR`` (default: a
folder in the system's temporary directory) so a second run skips the cloning.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes.model_server import FakeModelServer

KEEL = [sys.executable, "-m", "keel"]
MODEL = "openai:gpt-4.1"
PLAN = {
    "nodes": [
        {
            "id": "n1",
            "title": "Make the change",
            "kind": "code",
            "owns": ["CHANGE_NOTES.md"],
            "context": [],
            "depends_on": [],
            "commands": [],
            "contract": {"symbols": [], "forbidden": []},
        }
    ]
}


def dev_module(folder: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_dev_cases", folder / "make_dev_cases.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"no make_dev_cases.py in {folder}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_dev_cases"] = module
    spec.loader.exec_module(module)
    return module


def request_text(body: Any) -> str:
    """System and user text of a chat-completions or messages request body."""
    parts: list[str] = []

    def content(value: Any) -> None:
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict) and isinstance(item.get("text"), str):
                    parts.append(item["text"])

    if isinstance(body, dict):
        content(body.get("system"))
        for message in body.get("messages") or []:
            if isinstance(message, dict):
                content(message.get("content"))
    return "\n".join(parts)


def env_for(server: FakeModelServer, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(
        OPENAI_API_KEY="sk-bench-not-a-real-key-0123456789",
        OPENAI_BASE_URL=server.openai_base_url,
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        GIT_AUTHOR_NAME="Bench",
        GIT_AUTHOR_EMAIL="bench@example.com",
        GIT_COMMITTER_NAME="Bench",
        GIT_COMMITTER_EMAIL="bench@example.com",
    )
    return env


def first_architect_request(workspace: Path, task: str, home: Path) -> str:
    entry = {"tier": "architect", "node": None, "attempt": 1, "reply": PLAN}
    with FakeModelServer([entry]) as server:
        command = [*KEEL, "agent", "-y", "--json", "--model", MODEL, "--max-steps", "1"]
        proc = subprocess.run(
            [*command, "-w", str(workspace), task],
            env=env_for(server, home),
            capture_output=True,
            text=True,
            check=False,
        )
        architect = [r for r in server.requests if r.headers.get("X-Keel-Tier") == "architect"]
        if not architect:
            raise SystemExit(f"no architect request (exit {proc.returncode}):\n{proc.stderr}")
        # The scored context: every planner request before the first actuator request.
        return "\n".join(request_text(r.body) for r in architect)


def recall(dev: Path, bench_dir: Path, limit: int | None, only: str, dump: Path | None) -> None:
    m = dev_module(dev)
    cases = [json.loads(line) for line in (dev / "cases.jsonl").read_text().splitlines()]
    cases = [c for c in cases if only in c["id"]][:limit]
    layouts, runs, home = bench_dir / "layouts", bench_dir / "runs", bench_dir / "home"
    for folder in (layouts, runs, home):
        folder.mkdir(parents=True, exist_ok=True)
    by_repo: dict[str, list[dict[str, float]]] = {}
    print(f"{'case':<22} {'path':>5} {'content':>7} {'tokens':>6}")
    for case in cases:
        layout = layouts / case["id"]
        if not (layout / ".git").is_dir():
            m.workspace(case["repo"], case["parent"], layout)
        workspace = runs / case["id"]
        shutil.rmtree(workspace, ignore_errors=True)
        shutil.copytree(layout, workspace, symlinks=True)
        # The layout is detached at the parent commit; Keel commits only onto a branch.
        subprocess.run(
            ["git", "-C", str(workspace), "switch", "-q", "-c", "keel-bench"], check=True
        )
        prompt = first_architect_request(workspace, case["task"], home)
        score = m.score(prompt, case["task"], workspace, case["gold"])
        if dump is not None:
            dump.mkdir(parents=True, exist_ok=True)
            (dump / f"{case['id']}.txt").write_text(prompt)
        by_repo.setdefault(case["repo"], []).append(score)
        print(
            f"{case['id']:<22} {score['path_recall']:>5.2f} {score['content_recall']:>7.2f} "
            f"{score['tokens']:>6}",
            flush=True,
        )
        shutil.rmtree(workspace, ignore_errors=True)
    print()
    print(f"{'repository':<22} {'cases':>5} {'path':>6} {'content':>7} {'tokens':>7} {'max':>6}")
    rows = [*by_repo.items(), ("overall", [s for v in by_repo.values() for s in v])]
    for repo, scores in rows:
        n = len(scores)
        path = sum(s["path_recall"] for s in scores) / n
        content = sum(s["content_recall"] for s in scores) / n
        tokens = statistics.mean(s["tokens"] for s in scores)
        top = max(s["tokens"] for s in scores)
        print(f"{repo:<22} {n:>5} {path:>6.3f} {content:>7.3f} {tokens:>7.0f} {top:>6}")


def generated_repository(root: Path, files: int) -> Path:
    """``files`` Python modules in 100-module packages; each defines a class and functions and
    uses names from three other modules, so the file graph is connected."""
    if (root / ".git").is_dir():
        return root
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        package = root / "src" / "gen" / f"pkg{i // 100:03d}"
        package.mkdir(parents=True, exist_ok=True)
        uses = [(i * 7 + k * 131) % files for k in (1, 2, 3)]
        body = [f"from gen.pkg{u // 100:03d}.mod{u:05d} import helper_{u}" for u in uses]
        body += [
            "",
            f"class Widget{i}:",
            f'    """Widget number {i}."""',
            "",
            "    def render(self, size: int) -> str:",
            f"        return helper_{uses[0]}(size) + helper_{uses[1]}(size)",
            "",
            "    def resize(self, factor: float) -> None:",
            f"        self.size = helper_{uses[2]}(factor)",
            "",
            "",
            f"def helper_{i}(value):",
            "    return str(value) * 2",
            "",
            "",
            f"def build_{i}(count: int) -> list[Widget{i}]:",
            f"    return [Widget{i}() for _ in range(count)]",
        ]
        (package / f"mod{i:05d}.py").write_text("\n".join(body) + "\n")
    git = ["git", "-C", str(root), "-c", "user.name=Bench", "-c", "user.email=bench@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "generated"], check=True)
    return root


async def build_times(workspace: Path, task: str, budget: int) -> dict[str, float]:
    from keel.context import repomap
    from keel.context.inventory import Inventory
    from keel.context.repomap import RepositoryMap

    cache = workspace / ".keel-bench-cache"
    shutil.rmtree(cache, ignore_errors=True)
    started = time.perf_counter()
    await RepositoryMap(workspace, cache_dir=cache).render_map(task, budget_tokens=budget)
    cold = time.perf_counter() - started
    runs: dict[str, list[float]] = {"warm": [], "hot": [], "inventory": [], "index": []}
    for _ in range(3):
        repo_map = RepositoryMap(workspace, cache_dir=cache)
        started = time.perf_counter()
        await repo_map.render_map(task, budget_tokens=budget)
        runs["warm"].append(time.perf_counter() - started)
        started = time.perf_counter()
        await repo_map.render_map(task, budget_tokens=budget)
        runs["hot"].append(time.perf_counter() - started)
        # The warm build's first two stages alone (the rest is ranking and rendering).
        started = time.perf_counter()
        inventory = await Inventory.load(workspace, cache)
        runs["inventory"].append(time.perf_counter() - started)
        started = time.perf_counter()
        repomap._load_index(inventory, cache, False)
        runs["index"].append(time.perf_counter() - started)
    shutil.rmtree(cache, ignore_errors=True)
    return {"cold": cold, **{k: statistics.median(v) for k, v in runs.items()}}


def timing(dev: Path, bench_dir: Path) -> None:
    from keel.config import ContextConfig

    budget = ContextConfig().map_tokens
    started = time.perf_counter()
    import numpy  # noqa: F401

    print(f"\nimporting numpy: {time.perf_counter() - started:.2f} s")
    m = dev_module(dev)
    cases = [json.loads(line) for line in (dev / "cases.jsonl").read_text().splitlines()]
    largest = max(
        (c for c in cases if (bench_dir / "layouts" / c["id"] / ".git").is_dir()),
        key=lambda c: len(m.git(bench_dir / "layouts" / c["id"], "ls-files").split()),
        default=None,
    )
    targets: list[tuple[str, Path, str]] = []
    if largest is not None:
        targets.append((largest["id"], bench_dir / "layouts" / largest["id"], largest["task"]))
    task = "Widget render should round the size; fix helper_42 and build_4242"
    for files in (5_000, 50_000):
        started = time.perf_counter()
        repo = generated_repository(bench_dir / f"generated-{files}", files)
        print(f"generated {files} files in {time.perf_counter() - started:.0f} s (once)")
        targets.append((f"generated {files:,} files", repo, task))
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"\n{'repository':<28} {'files':>6} {'cold s':>7} {'warm ms':>8} {'hot ms':>7}"
        f" {'(warm: inventory':>17} {'index':>6} {'rank+render)':>13}"
    )
    for name, repo, text in targets:
        count = len(
            subprocess.run(
                ["git", "-C", str(repo), "ls-files"], capture_output=True, text=True, check=True
            ).stdout.split()
        )
        t = asyncio.run(build_times(repo, text, budget))
        rest = t["warm"] - t["inventory"] - t["index"]
        print(
            f"{name:<28} {count:>6} {t['cold']:>7.2f} {t['warm'] * 1000:>8.0f} "
            f"{t['hot'] * 1000:>7.0f} {t['inventory'] * 1000:>17.0f} {t['index'] * 1000:>6.0f} "
            f"{rest * 1000:>13.0f}",
            flush=True,
        )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=None, help="only the first N cases")
    parser.add_argument("--only", default="", help="only cases whose id contains this")
    parser.add_argument("--no-timing", action="store_true", help="skip the build times")
    parser.add_argument("--no-recall", action="store_true", help="skip the recall cases")
    parser.add_argument("--dump", type=Path, help="write each scored request to this folder")
    args = parser.parse_args()
    dev = Path(os.environ.get("KEEL_CONTEXT_DEV", "/work/shared/context-dev"))
    default_dir = Path(tempfile.gettempdir()) / "keel-bench-context"
    bench_dir = Path(os.environ.get("KEEL_BENCH_DIR", default_dir))
    if not args.no_recall:
        recall(dev, bench_dir, args.cases, args.only, args.dump)
    if not args.no_timing:
        timing(dev, bench_dir)


if __name__ == "__main__":
    main()
