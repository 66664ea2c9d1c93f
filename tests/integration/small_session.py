"""A small, fast session for tests that run the real ``keel`` CLI many times.

Three nodes in a chain, all plain text files so no type checker or test runner starts (a run
takes about a second, mostly interpreter start-up), yet every commit point is exercised:

- ``node-1`` writes two files, so a kill can land after some files of a bundle;
- ``node-2`` runs a command and its first bundle breaks its contract (``TODO`` is forbidden),
  so it is corrected: a verifier call and a second actuator attempt;
- ``node-3`` depends on ``node-2``.

The model is ``openai:gpt-4.1`` (priced) behind the fake server, and every reply carries
``usage`` token counts, so costs are known exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fakes.model_server import FakeModelServer, RecordedRequest
from tests.integration.conftest import KEEL, bundle, git, node, plan

TASK = "Write the release notes"
MODEL = "openai:gpt-4.1"
PRICE_IN, PRICE_OUT = 2.00, 8.00  # gpt-4.1, USD per million tokens (keel.providers.prices)

Key = tuple[str, str | None, int]


def small_entries(input_tokens: int = 1000, output_tokens: int = 100) -> list[dict[str, Any]]:
    """The transcript: 7 replies (plan, speculation, 4 actuator attempts, 1 analysis)."""
    forbid = {"symbols": [], "forbidden": ["TODO"]}
    nodes = [
        node("node-1", ["notes/a.txt", "notes/b.txt"], title="Two notes"),
        node("node-2", ["c.txt"], depends_on=["node-1"], commands=["python -m compileall -q ."]),
        node("node-3", ["d.txt"], depends_on=["node-2"], title="Last note"),
    ]
    nodes[1]["contract"] = forbid
    entries = [
        plan(*nodes),
        {"tier": "speculator", "node": None, "attempt": 1, "reply": {"hints": []}},
        bundle("node-1", writes={"notes/a.txt": "alpha\n" * 50, "notes/b.txt": "beta\n" * 50}),
        bundle("node-2", writes={"c.txt": "TODO: gamma\n"}),
        {
            "tier": "verifier",
            "node": "node-2",
            "attempt": 1,
            "reply": {"verdict": "unstable", "analysis": "a TODO is left", "fix_hints": []},
        },
        bundle("node-2", 2, writes={"c.txt": "gamma\n"}),
        bundle("node-3", writes={"d.txt": "delta\n"}),
    ]
    usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    return [{**entry, "usage": usage} for entry in entries]


def call_cost(input_tokens: int, output_tokens: int) -> float:
    return (input_tokens * PRICE_IN + output_tokens * PRICE_OUT) / 1_000_000


def key_of(request: RecordedRequest) -> Key:
    headers = request.headers
    return (headers["X-Keel-Tier"], headers.get("X-Keel-Node"), int(headers["X-Keel-Attempt"]))


def request_counts(requests: Iterable[RecordedRequest]) -> Counter[Key]:
    return Counter(key_of(r) for r in requests if r.method == "POST")


def keel_env(server: FakeModelServer, home: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``keel`` process talking to ``server``; no user config, no fault."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(
        OPENAI_API_KEY="sk-test-not-a-real-key-0123456789",
        OPENAI_BASE_URL=server.openai_base_url,
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_STATE_HOME=str(home / ".local" / "state"),  # the workspace registry
    )
    env.update(extra)
    return env


def init_workspace(path: Path) -> Path:
    """A repository with one commit of the user's own."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("# Release notes\n")
    git(path, "add", "README.md")
    git(path, "commit", "-qm", "initial commit")
    return path


def agent_command(workspace: Path, *extra: str) -> list[str]:
    return [*KEEL, "agent", "-y", "--json", "--model", MODEL, "-w", str(workspace), *extra, TASK]


def resume_command(workspace: Path, *extra: str) -> list[str]:
    return [*KEEL, "resume", "--last", "-y", "--json", "-w", str(workspace), *extra]


def run(command: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, env=dict(env), timeout=120, check=False
    )


def keel_json(workspace: Path, env: Mapping[str, str], *args: str) -> Any:
    """``keel ARGS -w WORKSPACE --json`` parsed; fails the test on a non-zero exit."""
    proc = run([*KEEL, *args, "-w", str(workspace), "--json"], env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def tree(workspace: Path) -> list[str]:
    """``git ls-tree -r HEAD``: mode, type, blob id and path of every committed file."""
    return git(workspace, "ls-tree", "-r", "HEAD").splitlines()


def subjects(workspace: Path) -> list[str]:
    return git(workspace, "log", "--format=%s").splitlines()


def session_commits(workspace: Path, session: str) -> list[str]:
    """Commits whose ``Keel-Session`` trailer names ``session``, read with git itself."""
    out = git(workspace, "log", "--format=%H %(trailers:key=Keel-Session,valueonly,separator=)")
    pairs = [line.split(" ", 1) for line in out.splitlines() if line.strip()]
    return [sha for sha, value in pairs if value.strip() == session]


@dataclass(frozen=True)
class SmallRun:
    """A finished, successful run of the small session; copy ``workspace`` before changing it."""

    workspace: Path
    session: str
    events: list[dict[str, Any]]
    counts: Counter[Key]
    tree: list[str]
    subjects: list[str]


def record_small_session(home: Path) -> SmallRun:
    workspace = init_workspace(home / "ws")
    with FakeModelServer(small_entries()) as server:
        proc = run(agent_command(workspace), keel_env(server, home))
        counts = request_counts(server.requests)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    return SmallRun(
        workspace, events[0]["session"], events, counts, tree(workspace), subjects(workspace)
    )


def copy_workspace(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest, symlinks=True)
    return dest
