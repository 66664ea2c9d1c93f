"""How long the architect's read-only tools take on real and large repositories.

Each tool call is a pause in planning (the model waits for its result), so they should take
well under a second on ordinary repositories, and a scan of a huge one must stop in time
(``SCAN_SECONDS``) rather than hold the session.

Repositories:

- the largest dev-set repository (python-poetry/poetry at its bundle's tip, from
  ``KEEL_CONTEXT_DEV``, default ``/work/shared/context-dev``; skipped when absent);
- a generated git repository of N Python files (default 5,000) in 50 packages.

For each: the inventory listing (cold, then cached), then ``search_code`` (a literal and a
regex), ``find_symbol``, ``open_file`` and ``list_folder``: the first call (files read and
parsed cold, in the order a session would meet them) and the median of RUNS more (the
explorer keeps what it read for the planning phase).

Run: ``.venv/bin/python bench/explore_tools.py [RUNS] [FILES]``; prints figures, asserts
nothing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from keel.context.explore import WorkspaceExplorer
from keel.context.inventory import Inventory, secret_looking

DEV = Path(os.environ.get("KEEL_CONTEXT_DEV", "/work/shared/context-dev"))


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=b", "-c", "user.email=b@example.com", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def generated(root: Path, files: int) -> Path:
    root.mkdir(parents=True)
    git(root, "init", "-q")
    for n in range(files):
        package = root / f"pkg{n % 50}"
        package.mkdir(exist_ok=True)
        body = "".join(
            f"def handler_{n}_{k}(request, retries=3):\n"
            f"    return dispatch_{(n + k) % files}(request) or retries\n\n\n"
            for k in range(20)
        )
        (package / f"module_{n}.py").write_text(f'"""Module {n}."""\n\n\n' + body)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "generated")
    return root


def poetry(scratch: Path) -> Path | None:
    bundle = DEV / "repos" / "python-poetry+poetry.bundle"
    if not bundle.is_file():
        return None
    dest = scratch / "poetry"
    subprocess.run(["git", "clone", "-q", str(bundle), str(dest)], check=True)
    return dest


async def timed(runs: int, call: Callable[[], Awaitable[Any]]) -> tuple[float, float, Any]:
    """The first run (files read cold) and the median of the next ``runs`` (cached)."""
    times, result = [], None
    for _ in range(runs + 1):
        start = time.perf_counter()
        result = await call()
        times.append((time.perf_counter() - start) * 1000)
    return times[0], statistics.median(times[1:]), result


async def measure(
    name: str, root: Path, runs: int, calls: list[tuple[str, dict[str, Any]]]
) -> None:
    cache = root / ".keel" / "context"
    cache.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    inventory = await Inventory.load(root, cache)
    cold = (time.perf_counter() - start) * 1000
    _, warm, _ = await timed(runs, lambda: Inventory.load(root, cache))
    print(f"\n{name}: {len(inventory)} files in the inventory")
    print(f"  inventory listing: cold {cold:.0f} ms, cached {warm:.0f} ms (median of {runs})")
    explorer = WorkspaceExplorer(root, inventory, secret_looking)
    for tool, arguments in calls:
        first, median, result = await timed(
            runs, lambda t=tool, a=arguments: explorer.call(t, a, 8_000)
        )
        shown = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
        size = len(result.text)
        print(f"  {tool}({shown}): first {first:.0f} ms, then {median:.0f} ms, {size} chars")


async def main(runs: int, files: int) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="keel-bench-explore-"))
    try:
        real = poetry(scratch)
        if real is None:
            print(f"(no dev set at {DEV}: poetry skipped)")
        else:
            await measure(
                "python-poetry/poetry (bundle tip)",
                real,
                runs,
                [
                    ("search_code", {"pattern": "def install"}),
                    ("search_code", {"pattern": r"class \w+Error\(", "regex": True}),
                    ("find_symbol", {"name": "Installer"}),
                    ("open_file", {"path": "src/poetry/installation/installer.py", "end": 200}),
                    ("list_folder", {"path": "src/poetry"}),
                ],
            )
        big = generated(scratch / "generated", files)
        await measure(
            f"generated ({files} files, 20 functions each)",
            big,
            runs,
            [
                ("search_code", {"pattern": "handler_4999_7"}),
                ("search_code", {"pattern": r"dispatch_\d+7\(", "regex": True}),
                ("find_symbol", {"name": "handler_123_4"}),
                ("open_file", {"path": "pkg0/module_0.py"}),
                ("list_folder", {"path": "pkg7"}),
            ],
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 3,
            int(sys.argv[2]) if len(sys.argv) > 2 else 5_000,
        )
    )
