"""The server's own bookkeeping: settings problems said once per change and read off the
event loop, the editor's evidence for the final sheaf check (pinned to the content), and
background work that is cancelled before it starts."""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as T

from keel.engine.models import Component, Residual
from keel.lsp.client import Tasks
from keel.lsp.documents import EditorReport, digest
from keel.lsp.evidence import EditorEvidenceSource
from keel.lsp.server import KeelLanguageServer
from keel.lsp.views import SessionView
from keel.lsp.workspace import Workspace


async def _never(root: Path, env: Any) -> Any:
    raise AssertionError("no workspace is opened here")


@pytest.fixture
def server(tmp_path: Path) -> KeelLanguageServer:
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    made = KeelLanguageServer(open_workspace=_never, env=env, editor_wait_s=0.05)
    made.root = tmp_path
    return made


def test_each_settings_problem_is_shown_once_per_change(tmp_path: Path) -> None:
    shown: list[str] = []
    workspace = Workspace(_never, {}, warn=shown.append)
    workspace.report_problems(["a", "b"])
    workspace.report_problems(["a", "b"])  # another session: nothing again
    workspace.report_problems(["a", "c"])
    assert shown == ["Keel: a", "Keel: b", "Keel: c"]
    workspace.settings_changed()
    workspace.report_problems(["a"])
    assert shown[-1] == "Keel: a" and len(shown) == 4


def test_settings_problems_reach_the_client_as_warnings(
    server: KeelLanguageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown: list[tuple[str, T.MessageType]] = []

    def show(message: str, kind: T.MessageType = T.MessageType.Info) -> None:
        shown.append((message, kind))

    monkeypatch.setattr(server.client, "show", show)
    server.folder.report_problems(["a"])
    assert shown == [("Keel: a", T.MessageType.Warning)]


async def test_settings_are_read_in_a_worker_thread(
    server: KeelLanguageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    (Path(str(server.root)) / "keel.toml").write_text('[engine]\nmode = "yolo"\n')
    threads: list[int] = []
    original = Workspace.settings

    def spy(self: Workspace, *extra: Any) -> Any:
        threads.append(threading.get_ident())
        return original(self, *extra)

    monkeypatch.setattr(Workspace, "settings", spy)
    resolved = await server.folder.resolve_settings()
    assert resolved.config.engine.mode == "yolo"
    assert threads and threads[0] != threading.get_ident()


def test_the_wait_comes_from_the_environment(tmp_path: Path) -> None:
    made = KeelLanguageServer(open_workspace=_never, env={"KEEL_LSP_EDITOR_WAIT_S": "0.25"})
    assert made.editor_wait_s == 0.25
    assert KeelLanguageServer(open_workspace=_never, env={}).editor_wait_s == 1.5


def _report(path: str, content: str, message: str) -> EditorReport:
    residual = Residual(Component.SYN, f"error: {message}", "Pylance", 1.0, path=path, line=1)
    return EditorReport(path, f"file:///x/{path}", content, (), (residual,), 1)


async def test_sheaf_evidence_counts_only_reports_about_the_checked_content(
    server: KeelLanguageServer, tmp_path: Path
) -> None:
    checked = tmp_path / "checked"
    checked.mkdir()
    (checked / "a.py").write_text("A = 1\n")
    (checked / "b.py").write_text("B = 1\n")
    server.editor.put(_report("a.py", digest(b"A = 1\n"), "about a.py as committed"))
    server.editor.put(_report("b.py", digest(b"B = 0\n"), "about an older b.py"))
    report = await EditorEvidenceSource(
        server.documents, server.editor, server.editor_wait_s
    ).diagnostics(checked, ["a.py", "b.py", "c.py"])
    assert [r.message for r in report.residuals] == ["error: about a.py as committed"]
    assert report.sensor == "editor" and not report.degraded


async def test_sheaf_evidence_waits_boundedly_for_a_buffer_showing_the_content(
    server: KeelLanguageServer, tmp_path: Path
) -> None:
    (tmp_path / "a.py").write_text("A = 1\n")
    uri = (tmp_path / "a.py").as_uri()
    server.documents.opened(uri, "a.py", 3, "A = 1\n")
    report = await EditorEvidenceSource(
        server.documents, server.editor, server.editor_wait_s
    ).diagnostics(tmp_path, ["a.py"])
    assert report.residuals == ()  # no report within editor_wait_s: nothing to add


async def test_the_collaborators_share_one_state(server: KeelLanguageServer) -> None:
    """What sessions record, scoring and the editor-change callback see: one wiring."""
    view = SessionView("s-1", task="Add A")
    view.node("node-1").owns = ["a.py"]
    server.sessions.views["s-1"] = view
    assert server.scoring.summary().session_id == "s-1"
    server.editor.put(_report("a.py", digest(b"A = 1\n"), "about a.py"))  # a file s-1 owns
    assert server.refresh.scheduled  # the change is going to the client
    await server.close()
    assert server.client.closing and not server.refresh.scheduled
    server.refresh.schedule()
    assert not server.refresh.scheduled  # nothing more is sent once closing


async def test_background_work_cancelled_before_it_starts_leaves_no_unawaited_coroutine() -> None:
    """A session run cancelled before its first step (the server shutting down) was collected
    later with "coroutine ... was never awaited" (seen in CI's warnings summary)."""

    async def work() -> int:
        return 1

    tasks = Tasks(lambda *_: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task = tasks.run(work(), name="never started")
        task.cancel()
        await asyncio.wait([task])
        assert task.cancelled()
        del task  # the last reference to the coroutine: collecting it would warn
        gc.collect()
    assert [w for w in caught if "never awaited" in str(w.message)] == []
    assert not tasks.running
