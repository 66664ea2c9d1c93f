"""The Keel language server: the one object that holds all of the server's state.

Sessions and their views, pending bundles, open documents, forwarded editor diagnostics,
settings and background tasks all hang off :class:`KeelLanguageServer`; feature modules are
thin handlers over it. Work that outlives a request (a session) runs as a tracked task whose
exceptions are logged and shown, never lost. Nothing here blocks the event loop: git, SQLite
and the checkers run in the adapters' threads and subprocesses.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from lsprotocol import types as T
from pygls.capabilities import get_capability
from pygls.exceptions import FeatureRequestError, JsonRpcException, JsonRpcInternalError
from pygls.lsp.server import LanguageServer

from keel import __version__
from keel.engine.ports import KeelError
from keel.lsp import features
from keel.lsp.bundles import BundleRegistry
from keel.lsp.convert import EditCaps
from keel.lsp.documents import DocumentTracker, EditorDiagnostics
from keel.lsp.host import ModesOpener, WorkspaceHost, WorkspaceOpener
from keel.lsp.log import WindowLogMessageHandler
from keel.lsp.progress import ProgressReporter
from keel.lsp.protocol import KeelProtocol
from keel.lsp.refresh import Refresher
from keel.lsp.settings import Resolved, resolve
from keel.lsp.views import SessionView

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
        self.open_workspace = open_workspace
        #: ``keel.server.plan`` and ``keel.server.explain`` (None: not offered by this build).
        self.open_modes = open_modes
        self.env = dict(os.environ if env is None else env)
        self.editor_wait_s = (
            editor_wait_s if editor_wait_s is not None else _wait_s(self.env, EDITOR_WAIT_S)
        )
        self.root: Path | None = None
        self.init_options: Any = None
        self.client_settings: Any = None
        self.log_handler: WindowLogMessageHandler | None = None
        self.documents = DocumentTracker()
        self.editor = EditorDiagnostics(on_change=self._editor_changed)
        self.bundles = BundleRegistry()
        self.views: dict[str, SessionView] = {}
        self.runs: dict[str, asyncio.Task[Any]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.reporter = ProgressReporter(self)
        self.refresh = Refresher(self)
        self.closing = False
        self._host: WorkspaceHost | None = None
        self._host_lock: asyncio.Lock | None = None
        self._reported: set[str] = set()
        features.register_all(self)

    # -- background work -----------------------------------------------------------------

    def run_task(self, work: Awaitable[ResultT], name: str) -> asyncio.Task[ResultT]:
        """Run ``work`` in the background; keep it referenced, log and show its failure."""

        async def wrapper() -> ResultT:
            return await work

        task = asyncio.get_running_loop().create_task(wrapper(), name=name)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("%s failed: %s", task.get_name(), error, exc_info=error)
            self.show(f"Keel: {task.get_name()} failed: {error}", T.MessageType.Error)

    # -- talking to the client -----------------------------------------------------------

    def notify(self, method: str, params: Any) -> None:
        """Send a notification unless the connection is closing."""
        if not self.closing and self.protocol.writer is not None:
            self.protocol.notify(method, params)

    def notify_log(self, params: T.LogMessageParams) -> None:
        self.notify(T.WINDOW_LOG_MESSAGE, params)

    def show(self, message: str, kind: T.MessageType = T.MessageType.Info) -> None:
        self.notify(T.WINDOW_SHOW_MESSAGE, T.ShowMessageParams(type=kind, message=message))

    def supports(self, path: str, default: Any = False) -> Any:
        """A client capability by dotted snake_case path (``workspace.apply_edit``)."""
        try:
            return get_capability(self.client_capabilities, path, default)
        except (AttributeError, RuntimeError):
            return default

    def edit_caps(self) -> EditCaps:
        kinds = self.supports("workspace.workspace_edit.resource_operations", None) or []
        operations = frozenset(str(getattr(k, "value", k)) for k in kinds)
        return EditCaps(
            document_changes=bool(
                self.supports("workspace.workspace_edit.document_changes", False) or operations
            ),
            resource_operations=operations,
            annotations=self.supports("workspace.workspace_edit.change_annotation_support", None)
            is not None,
        )

    def position_encoding(self) -> str:
        try:
            return str(self.workspace.position_encoding or T.PositionEncodingKind.Utf16)
        except RuntimeError:
            return str(T.PositionEncodingKind.Utf16)

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
        self.show(f"Keel: {error}", T.MessageType.Error)

    # -- settings and the workspace ------------------------------------------------------

    def settings(self, *extra: Mapping[str, Any] | None) -> Resolved:
        """The configuration for a new session; problems are for the user to see.

        Reads ``keel.toml`` and the user's config file: call it in a worker thread
        (:meth:`resolve_settings`), never on the event loop.
        """
        return resolve(self.root, self.env, self.init_options, self.client_settings, *extra)

    async def resolve_settings(self, *extra: Mapping[str, Any] | None) -> Resolved:
        """:meth:`settings`, with the files read in a worker thread."""
        return await asyncio.to_thread(self.settings, *extra)

    def report_problems(self, problems: list[str]) -> None:
        """Show each settings problem once (until :meth:`settings_changed`)."""
        for problem in problems:
            if problem not in self._reported:
                self._reported.add(problem)
                self.show(f"Keel: {problem}", T.MessageType.Warning)

    def settings_changed(self) -> None:
        """The editor's settings changed: their problems are worth saying again."""
        self._reported.clear()

    async def host(self) -> WorkspaceHost:
        """The workspace's shared store and ledger, opened on first use."""
        if self.root is None:
            raise KeelError("Keel needs a workspace folder: open a folder, not a single file")
        if self._host_lock is None:
            self._host_lock = asyncio.Lock()
        async with self._host_lock:
            if self._host is None:
                self._host = await self.open_workspace(self.root, self.env)
            return self._host

    @property
    def opened_host(self) -> WorkspaceHost | None:
        return self._host

    async def close(self) -> None:
        """Stop every session (their state stays in the store) and close the workspace."""
        self.closing = True
        if self.log_handler is not None:
            self.log_handler.disconnect()
        runs = list(self.runs.values())
        for run in runs:
            run.cancel("the editor disconnected")
        if runs:
            await asyncio.gather(*runs, return_exceptions=True)
        self.refresh.cancel()
        if self._host is not None:
            host, self._host = self._host, None
            await host.close()

    # -- lookups -------------------------------------------------------------------------

    def _editor_changed(self, path: str) -> None:
        """New editor diagnostics matter to the client only for the sessions' files."""
        if self.bundles.for_path(path) or self.view_owning(path) is not None:
            self.refresh.schedule()

    def view_owning(self, path: str) -> tuple[SessionView, Any] | None:
        """The most recent session with a node that owns ``path``, and that node."""
        for view in reversed(list(self.views.values())):
            node = view.owner_of(path)
            if node is not None:
                return view, node
        return None
