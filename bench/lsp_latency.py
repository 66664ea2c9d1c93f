"""Hover and code action latency over stdio, idle and while 8 nodes verify (issue 4, must-show 3).

``python -m keel serve`` runs as a subprocess, driven by a pygls client over stdio, with the
fake OpenAI server of ``tests/fakes`` as its model. First ``keel agent`` (a recorded
transcript) commits ``warm.py`` in a one-node session; the server loads that session when it
starts, so a hover there computes a full energy report (re-scored from the editor's
diagnostics) and a code action on an error there offers "Fix with agent": real work, the
same in both phases. Then, in one run:

1. idle: N hovers and N code actions, one at a time, no session running;
2. busy: the same requests, one at a time, from the moment the plan of an 8-node session
   arrives until the session finishes; all 8 nodes verify concurrently (each runs the
   ``ty`` checker and the workspace's pytest suite in its own sandbox).

Latency is measured at the client, request sent to reply read. Prints p50/p99 per phase
(target: busy p99 under 20 ms). Run: ``.venv/bin/python bench/lsp_latency.py [N]``.
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
from pathlib import Path
from typing import Any

from lsprotocol import types as T
from pygls.lsp.client import LanguageClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fakes.model_server import FakeModelServer

NODES = 8
GIT = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}
TESTS = "".join(f"def test_{i}() -> None:\n    assert {i} + 1 == {i + 1}\n\n\n" for i in range(20))
OPTIONS = {
    "models": {"default": "openai:gpt-4.1"},
    "engine": {"mode": "yolo", "speculate": False, "max_attempts": 1},
}


def _node(node_id: str, path: str) -> dict[str, Any]:
    return {
        "id": node_id,
        "title": f"Module {path}",
        "kind": "code",
        "owns": [path],
        "context": [],
        "depends_on": [],
        "commands": [],
        "contract": {"symbols": [], "forbidden": []},
    }


def _module(i: int) -> str:
    functions = (f"def f{i}_{k}(x: int) -> int:\n    return x * {k} + {i}\n" for k in range(40))
    return f'"""Module {i}."""\n\n\n' + "\n\n".join(functions)


def _reply(node: str, path: str, content: str) -> dict[str, Any]:
    writes = [{"path": path, "content": content}]
    return {"tier": "actuator", "node": node, "attempt": 1, "reply": {"writes": writes}}


def _plan(*nodes: dict[str, Any]) -> dict[str, Any]:
    return {"tier": "architect", "node": None, "attempt": 1, "reply": {"nodes": list(nodes)}}


def warm_entries() -> list[dict[str, Any]]:
    return [_plan(_node("warm", "warm.py")), _reply("warm", "warm.py", _module(0))]


def busy_entries() -> list[dict[str, Any]]:
    ids = range(1, NODES + 1)
    replies = [_reply(f"node-{i}", f"pkg/mod{i}.py", _module(i)) for i in ids]
    return [_plan(*(_node(f"node-{i}", f"pkg/mod{i}.py") for i in ids)), *replies]


def prepare(tmp: Path) -> Path:
    """A git workspace with a test suite, and ``warm.py`` committed by a ``keel agent`` run."""
    root = tmp / "ws"
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_base.py").write_text(TESTS)
    env = {**os.environ, **GIT, "HOME": str(tmp)}
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "base"]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, env=env)
    transcript = tmp / "warm.jsonl"
    transcript.write_text("".join(json.dumps(e) + "\n" for e in warm_entries()))
    keel = [sys.executable, "-m", "keel", "agent", "-y", "--model", f"replay:{transcript}"]
    task = "Write the Python module warm.py"
    subprocess.run([*keel, "-w", str(root), task], check=True, capture_output=True, env=env)
    return root


class Bench:
    """A pygls client that times requests and follows ``keel/sessionChanged``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.client = LanguageClient("bench", "1")
        self.changes: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.document = T.TextDocumentIdentifier(uri=(root / "warm.py").as_uri())

        @self.client.feature("keel/sessionChanged")
        def changed(params: Any) -> None:
            self.changes.append({"running": params.running, "nodes": len(params.nodes)})
            self.changed.set()

        quiet = ["keel/bundleProposed", T.WINDOW_LOG_MESSAGE, T.WINDOW_SHOW_MESSAGE]
        quiet += [T.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS, T.PROGRESS]
        for method in quiet:
            self.client.feature(method)(lambda params: None)
        self.client.feature(T.WINDOW_WORK_DONE_PROGRESS_CREATE)(lambda params: None)

    async def start(self, tmp: Path, model: FakeModelServer) -> None:
        env = {**os.environ, **GIT, "HOME": str(tmp), "OPENAI_API_KEY": "sk-bench-not-a-key"}
        env["OPENAI_BASE_URL"] = model.openai_base_url
        await self.client.start_io(sys.executable, "-m", "keel", "serve", env=env)
        window = T.WindowClientCapabilities(work_done_progress=True)
        params = T.InitializeParams(
            capabilities=T.ClientCapabilities(window=window),
            root_uri=self.root.as_uri(),
            initialization_options=OPTIONS,
        )
        await self.client.initialize_async(params)
        self.client.initialized(T.InitializedParams())
        item = T.TextDocumentItem(
            self.document.uri, "python", 1, (self.root / "warm.py").read_text()
        )
        self.client.text_document_did_open(T.DidOpenTextDocumentParams(item))
        warning = {"range": {"start": {"line": 3}}, "message": "unused", "severity": 2}
        diagnostics = {"uri": self.document.uri, "version": 1, "diagnostics": [warning]}
        self.client.protocol.notify("keel/editorDiagnostics", diagnostics)
        await self.command("keel.server.status")  # the stored session is loaded

    async def command(self, name: str, argument: dict[str, Any] | None = None) -> Any:
        params = T.ExecuteCommandParams(name, [argument or {}])
        return await self.client.workspace_execute_command_async(params)

    async def until(self, predicate: Any) -> None:
        while not predicate():
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 300)

    def finished(self) -> bool:
        last = self.changes[-1] if self.changes else {"running": True}
        return not last["running"] and last["nodes"] == NODES

    async def one(self) -> tuple[float, float]:
        """One hover and one code action; their latencies in milliseconds."""
        where = T.Range(T.Position(3, 0), T.Position(3, 1))
        error = T.Diagnostic(where, "undefined", severity=T.DiagnosticSeverity.Error, source="x")
        actions = T.CodeActionParams(self.document, where, T.CodeActionContext([error]))
        start = time.perf_counter()
        hover = await self.client.text_document_hover_async(
            T.HoverParams(self.document, T.Position(3, 4))
        )
        middle = time.perf_counter()
        fixes = await self.client.text_document_code_action_async(actions)
        end = time.perf_counter()
        assert hover is not None and fixes, "warm.py is not owned by a committed node"
        return (middle - start) * 1000, (end - middle) * 1000

    async def stop(self) -> None:
        await self.client.shutdown_async(None)
        self.client.exit(None)
        await self.client.stop()


async def run(requests: int) -> None:
    with tempfile.TemporaryDirectory(prefix="keel-lsp-bench-") as name:
        tmp = Path(name)
        root = await asyncio.to_thread(prepare, tmp)
        with FakeModelServer(busy_entries()) as model:
            bench = Bench(root)
            await bench.start(tmp, model)
            idle = [await bench.one() for _ in range(requests)]
            seen = len(bench.changes)
            await bench.command("keel.server.startSession", {"task": "Write Python modules"})
            await bench.until(
                lambda: len(bench.changes) > seen and bench.changes[-1]["nodes"] == NODES
            )
            started, busy = time.perf_counter(), []
            while not bench.finished():
                busy.append(await bench.one())
            window = time.perf_counter() - started
            await bench.stop()
    report(idle, busy, window)


def report(idle: list[tuple[float, float]], busy: list[tuple[float, float]], window: float) -> None:
    print(f"keel serve over stdio; {NODES}-node session verifying concurrently for {window:.1f} s")
    print(f"{'request, phase':<32}{'count':>7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for phase, samples in (("idle", idle), (f"{NODES} nodes verifying", busy)):
        for index, kind in ((0, "hover"), (1, "codeAction")):
            values = [sample[index] for sample in samples]
            p99 = statistics.quantiles(values, n=100, method="inclusive")[98]
            line = f"{kind + ', ' + phase:<32}{len(values):>7}"
            print(f"{line}{statistics.median(values):>9.2f}{p99:>9.2f}{max(values):>9.2f}")


if __name__ == "__main__":
    asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 300))
