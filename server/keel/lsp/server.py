"""The Keel language server: the composition of its collaborators.

:class:`KeelLanguageServer` builds, in its constructor, every collaborator of the server,
each with the narrow collaborators it needs: the workspace (root, settings, the shared
host), open documents, forwarded editor diagnostics, pending bundles, scoring, the sessions
service, the approval object, review, the read-only modes, progress and the debounced
refresh, all of which reach the editor only through the client port
(:class:`~keel.lsp.client.ClientPort`). Feature modules are thin handlers over them
(:class:`~keel.lsp.services.Services`); no service holds the server. Work that outlives a
request (a session) runs as a tracked task whose exceptions are logged and shown, never
lost. Nothing here blocks the event loop: git, SQLite and the checkers run in the adapters'
threads and subprocesses.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from lsprotocol import types as T
from pygls.exceptions import FeatureRequestError, JsonRpcException, JsonRpcInternalError
from pygls.lsp.server import LanguageServer

from keel import __version__
from keel.lsp import features
from keel.lsp.approval import Approval
from keel.lsp.bundles import BundleRegistry
from keel.lsp.client import LspClient, Tasks
from keel.lsp.documents import DocumentTracker, EditorDiagnostics
from keel.lsp.evidence import EditorEvidenceSource
from keel.lsp.host import ModesOpener, WorkspaceOpener
from keel.lsp.log import WindowLogMessageHandler
from keel.lsp.modes import Modes
from keel.lsp.progress import ProgressReporter
from keel.lsp.protocol import KeelProtocol
from keel.lsp.refresh import Refresher
from keel.lsp.review import Review
from keel.lsp.scoring import Scoring
from keel.lsp.services import Services
from keel.lsp.sessions import Sessions
from keel.lsp.views import SessionView
from keel.lsp.workspace import Workspace

log = logging.getLogger(__name__)
ResultT = TypeVar("ResultT")

#: How long approval waits for the editor's diagnostics of a buffer that shows the proposal
#: (``KEEL_LSP_EDITOR_WAIT_S`` overrides it).
EDITOR_WAIT_S = 1.5


def _wait_s(env: Mapping[str, str], default: float) -> float:
    raw = env.get("KEEL_LSP_EDITOR_WAIT_S", "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        log.warning("KEEL_LSP_EDITOR_WAIT_S=%r is not a number; using %g s", raw, default)
        return default
    return min(max(value, 0.0), 60.0)


class KeelLanguageServer(LanguageServer):
    """``keel serve``: the engine hosted in a pygls 2 server (docs/reference/lsp.md)."""

    def __init__(
        self,
        *,
        open_workspace: WorkspaceOpener,
        env: Mapping[str, str] | None = None,
        editor_wait_s: float | None = None,
        open_modes: ModesOpener | None = None,
    ) -> None:
        super().__init__("keel", __version__, protocol_cls=KeelProtocol, max_workers=8)
        self.env = dict(os.environ if env is None else env)
        self.editor_wait_s = (
            editor_wait_s if editor_wait_s is not None else _wait_s(self.env, EDITOR_WAIT_S)
        )
        self.log_handler: WindowLogMessageHandler | None = None
        self.client = LspClient(self)
        self.tasks = Tasks(self.client.show)
        self.folder = Workspace(open_workspace, self.env, warn=self._warn)
        self.documents = DocumentTracker(text=self._text)
        self.editor = EditorDiagnostics(on_change=self._editor_changed)
        self.bundles = BundleRegistry()
        views: dict[str, SessionView] = {}
        self.scoring = Scoring(views, self.bundles, self.editor, root=self._root)
        self.reporter = ProgressReporter(self.client, self.tasks.run)
        self.refresh = Refresher(
            client=self.client,
            spawn=self.tasks.run,
            views=views,
            bundles=self.bundles,
            documents=self.documents,
            scoring=self.scoring,
            root=self._root,
        )
        self.sessions = Sessions(
            views=views,
            workspace=self.folder,
            bundles=self.bundles,
            scoring=self.scoring,
            reporter=self.reporter,
            client=self.client,
            evidence=EditorEvidenceSource(self.documents, self.editor, self.editor_wait_s),
            spawn=self.tasks.run,
            changed=self.refresh.schedule,
        )
        self.approval = Approval(
            bundles=self.bundles,
            documents=self.documents,
            editor=self.editor,
            editor_wait_s=self.editor_wait_s,
            scoring=self.scoring,
            client=self.client,
            workspace=self.folder,
            runs=self.sessions.runs,
            changed=self.refresh.schedule,
        )
        self.review = Review(
            bundles=self.bundles,
            documents=self.documents,
            client=self.client,
            workspace=self.folder,
        )
        self.modes = Modes(self.folder, self.client, open_modes)
        features.register_all(
            self,
            Services(
                workspace=self.folder,
                client=self.client,
                spawn=self.tasks.run,
                documents=self.documents,
                editor=self.editor,
                bundles=self.bundles,
                scoring=self.scoring,
                sessions=self.sessions,
                approval=self.approval,
                review=self.review,
                modes=self.modes,
                reporter=self.reporter,
                refresh=self.refresh,
                connect_log=self._connect_log,
                close=self.close,
            ),
        )

    @property
    def root(self) -> Path | None:
        """The workspace folder (from ``initialize``)."""
        return self.folder.root

    @root.setter
    def root(self, value: Path | None) -> None:
        self.folder.root = value

    def run_task(self, work: Awaitable[ResultT], name: str) -> asyncio.Task[ResultT]:
        """Run ``work`` in the background; keep it referenced, log and show its failure."""
        return self.tasks.run(work, name)

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Out-of-band errors are logged and shown; request errors are in the reply.

        A request that failed on purpose (``InvalidParams``, ``RequestFailed``) says why in
        its reply; one that crashed (an internal error) is also logged, so the user sees it
        in the client's log (``window/logMessage``). pygls contains both: the server goes on.
        """
        if source is FeatureRequestError:
            if isinstance(error, JsonRpcInternalError) or not isinstance(error, JsonRpcException):
                log.error("a request failed inside Keel: %s", error)
            return
        log.error("server error (%s): %s", getattr(source, "__name__", source), error)
        self.client.show(f"Keel: {error}", T.MessageType.Error)

    async def abort_requested(self) -> list[str]:
        """``keel abort`` signalled this process: abort the sessions it asked to stop."""
        return await self.sessions.abort_requested()

    async def close(self) -> None:
        """Stop every session (their state stays in the store) and close the workspace."""
        self.client.close()
        if self.log_handler is not None:
            self.log_handler.disconnect()
        await self.sessions.stop_all("the editor disconnected")
        self.refresh.cancel()
        await self.folder.close()

    # -- callbacks the collaborators are built with ----------------------------------------

    def _root(self) -> Path | None:
        return self.folder.root

    def _text(self, uri: str) -> str:
        return self.workspace.get_text_document(uri).source

    def _warn(self, message: str) -> None:
        self.client.show(message, T.MessageType.Warning)

    def _connect_log(self) -> None:
        if self.log_handler is not None:
            send = self.client.notify
            loop = asyncio.get_running_loop()
            self.log_handler.connect(lambda params: send(T.WINDOW_LOG_MESSAGE, params), loop)

    def _editor_changed(self, path: str) -> None:
        """New editor diagnostics matter to the client only for the sessions' files."""
        if self.bundles.for_path(path) or self.sessions.view_owning(path) is not None:
            self.refresh.schedule()
