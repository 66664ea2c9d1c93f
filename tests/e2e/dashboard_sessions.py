"""Real sessions for the dashboard's browser tests, its screenshots and its benchmark.

Every store here is written by the real ``keel`` CLI: the demo (its recorded transcript), and
a partial and a failed session against the fake model server (``tests/fakes``), in a home
whose state directory (the workspace registry) is the test's own. ``Dashboard`` runs the real
``keel dashboard`` and reads the URL it prints.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import bundle, git, node, plan
from tests.integration.small_session import MODEL, init_workspace, keel_env

KEEL = [sys.executable, "-m", "keel"]
CHROMIUM = "/usr/bin/chromium"


def home_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment whose config and state (the registry) live under ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_STATE_HOME=str(home / ".state"),
    )
    env.update(extra)
    return env


def run_demo(home: Path, name: str = "demo") -> Path:
    workspace = home / name
    proc = subprocess.run(
        [*KEEL, "demo", "--json", "-w", str(workspace)],
        capture_output=True,
        text=True,
        env=home_env(home),
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return workspace


def no_retries(workspace: Path) -> None:
    """A ``keel.toml`` without network retries, committed (a lost reply fails at once)."""
    (workspace / "keel.toml").write_text("[network]\nmax_retries = 0\n")
    git(workspace, "add", "keel.toml")
    git(workspace, "commit", "-qm", "keel settings")


def partial_entries() -> list[dict[str, Any]]:
    """node-1 commits; node-2 leaves a forbidden TODO and escalates; node-3 cannot start."""
    nodes = [
        node("node-1", ["notes/a.txt"], title="First note"),
        node("node-2", ["c.txt"], depends_on=["node-1"], title="Second note"),
        node("node-3", ["d.txt"], depends_on=["node-2"], title="Last note"),
    ]
    nodes[1]["contract"] = {"symbols": [], "forbidden": ["TODO"]}
    verdict = {"verdict": "unstable", "analysis": "a TODO is left", "fix_hints": ["remove it"]}
    return [
        plan(*nodes),
        {"tier": "speculator", "node": None, "attempt": 1, "reply": {"hints": []}},
        bundle("node-1", writes={"notes/a.txt": "alpha\n"}),
        bundle("node-2", writes={"c.txt": "TODO: gamma\n"}),
        {"tier": "verifier", "node": "node-2", "attempt": 1, "reply": verdict},
        bundle("node-2", 2, writes={"c.txt": "TODO: still\n"}),
        {"tier": "verifier", "node": "node-2", "attempt": 2, "reply": verdict},
    ]


def failed_entries() -> list[dict[str, Any]]:
    """One node whose every bundle breaks its contract."""
    only = node("node-1", ["todo.txt"], title="The only note")
    only["contract"] = {"symbols": [], "forbidden": ["TODO"]}
    verdict = {"verdict": "unstable", "analysis": "TODO again", "fix_hints": []}
    return [
        plan(only),
        {"tier": "speculator", "node": None, "attempt": 1, "reply": {"hints": []}},
        bundle("node-1", writes={"todo.txt": "TODO\n"}),
        {"tier": "verifier", "node": "node-1", "attempt": 1, "reply": verdict},
        bundle("node-1", 2, writes={"todo.txt": "TODO too\n"}),
        {"tier": "verifier", "node": "node-1", "attempt": 2, "reply": verdict},
    ]


def run_fake_session(
    home: Path, name: str, entries: list[dict[str, Any]], task: str, *extra: str
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    workspace = init_workspace(home / name)
    no_retries(workspace)
    with FakeModelServer(entries) as server:
        env = keel_env(server, home, XDG_STATE_HOME=str(home / ".state"))
        command = [*KEEL, "agent", "-y", "--json", "--model", MODEL, "-w", str(workspace)]
        proc = subprocess.run(
            [*command, "--max-attempts", "2", *extra, task],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
    return workspace, proc


@dataclass
class Stores:
    home: Path
    demo: Path
    partial: Path
    failed: Path


def record_stores(home: Path) -> Stores:
    demo = run_demo(home)
    partial, p = run_fake_session(home, "partial", partial_entries(), "Write three notes")
    assert p.returncode == 1 and '"outcome": "partial"' in p.stdout, p.stderr
    failed, f = run_fake_session(
        home, "failed", failed_entries(), "Write one note", "--max-cost", "1"
    )
    assert f.returncode == 1 and '"outcome": "failed"' in f.stdout, f.stderr
    return Stores(home, demo, partial, failed)


class Dashboard:
    """A running ``keel dashboard`` (stopped by :meth:`stop`); ``url`` is what it printed."""

    def __init__(
        self,
        env: Mapping[str, str],
        *args: str,
        cwd: Path | None = None,
    ) -> None:
        self.proc = subprocess.Popen(
            [*KEEL, "dashboard", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # printed once the socket listens
        if not line.startswith("keel dashboard: http://"):
            self.stop()
            raise AssertionError(f"keel dashboard did not start: {line!r} {self.stderr()}")
        self.url = line.split()[2].rstrip("/")

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # SIGINT is ignored under a background shell
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
