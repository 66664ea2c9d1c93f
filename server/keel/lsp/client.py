"""The editor as the server's services see it: a small client port, and background tasks.

Services never hold the language server. What they send to the client (notifications,
``workspace/applyEdit``, messages, work-done progress, a CodeLens refresh) and what they ask
of its capabilities goes through :class:`ClientPort`; work that outlives a request is handed
to :class:`Tasks`. :class:`LspClient` is the port over a pygls server; unit tests use an
in-memory double that records what was sent.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from lsprotocol import types as T
from pygls.capabilities import get_capability
from pygls.lsp.server import LanguageServer

from keel.lsp.convert import EditCaps

log = logging.getLogger(__name__)
ResultT = TypeVar("ResultT")


class ClientPort(Protocol):
    """Everything a service sends to the editor or asks about it."""

    @property
    def closing(self) -> bool:
        """True once the connection is going away: nothing more is sent."""
        ...

    def notify(self, method: str, params: Any) -> None: ...

    def show(self, message: str, kind: T.MessageType = T.MessageType.Info) -> None: ...

    def supports(self, path: str, default: Any = False) -> Any:
        """A client capability by dotted snake_case path (``workspace.apply_edit``)."""
        ...

    def edit_caps(self) -> EditCaps: ...

    def position_encoding(self) -> str: ...

    async def apply_edit(
        self, params: T.ApplyWorkspaceEditParams
    ) -> T.ApplyWorkspaceEditResult: ...

    async def ask(self, params: T.ShowMessageRequestParams) -> T.MessageActionItem | None:
        """``window/showMessageRequest``: the action the user chose, if any."""
        ...

    async def create_progress(self, token: str) -> None:
        """``window/workDoneProgress/create``; raises when the client refuses."""
        ...

    def forget_progress(self, token: str) -> None:
        """A token that ended: the client may cancel it no more."""
        ...

    async def refresh_code_lenses(self) -> None: ...

    async def configuration(self, params: T.ConfigurationParams) -> list[Any]:
        """``workspace/configuration``: the client's settings for each item."""
        ...


class Spawn(Protocol):
    """Starts tracked background work (:meth:`Tasks.run`)."""

    def __call__(self, work: Awaitable[ResultT], name: str) -> asyncio.Task[ResultT]: ...


class Tasks:
    """Background work that outlives a request: referenced, its failure logged and shown."""

    def __init__(self, show: Callable[[str, T.MessageType], None]) -> None:
        self._show = show
        self.running: set[asyncio.Task[Any]] = set()

    def run(self, work: Awaitable[ResultT], name: str) -> asyncio.Task[ResultT]:
        """Run ``work`` in the background; keep it referenced, log and show its failure."""

        async def wrapper() -> ResultT:
            return await work

        task = asyncio.get_running_loop().create_task(wrapper(), name=name)
        self.running.add(task)
        task.add_done_callback(self._done)
        task.add_done_callback(lambda _: close_unstarted(work))
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.running.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("%s failed: %s", task.get_name(), error, exc_info=error)
            self._show(f"Keel: {task.get_name()} failed: {error}", T.MessageType.Error)


class LspClient:
    """:class:`ClientPort` over a pygls server's connection."""

    def __init__(self, server: LanguageServer) -> None:
        self._server = server
        self._closing = False

    @property
    def closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def notify(self, method: str, params: Any) -> None:
        """Send a notification unless the connection is closing."""
        if not self._closing and self._server.protocol.writer is not None:
            self._server.protocol.notify(method, params)

    def show(self, message: str, kind: T.MessageType = T.MessageType.Info) -> None:
        self.notify(T.WINDOW_SHOW_MESSAGE, T.ShowMessageParams(type=kind, message=message))

    def supports(self, path: str, default: Any = False) -> Any:
        try:
            return get_capability(self._server.client_capabilities, path, default)
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
            return str(self._server.workspace.position_encoding or T.PositionEncodingKind.Utf16)
        except RuntimeError:
            return str(T.PositionEncodingKind.Utf16)

    async def apply_edit(self, params: T.ApplyWorkspaceEditParams) -> T.ApplyWorkspaceEditResult:
        return await self._server.workspace_apply_edit_async(params)

    async def ask(self, params: T.ShowMessageRequestParams) -> T.MessageActionItem | None:
        return await self._server.window_show_message_request_async(params)

    async def create_progress(self, token: str) -> None:
        await self._server.work_done_progress.create_async(token)

    def forget_progress(self, token: str) -> None:
        self._server.work_done_progress.tokens.pop(token, None)

    async def refresh_code_lenses(self) -> None:
        await self._server.workspace_code_lens_refresh_async(None)

    async def configuration(self, params: T.ConfigurationParams) -> list[Any]:
        return list(await self._server.workspace_configuration_async(params))


def close_unstarted(work: Awaitable[Any]) -> None:
    """Close ``work`` if it is a coroutine its task never started (the task was cancelled
    first): closing a finished coroutine does nothing, and an unstarted one closed says
    nothing, where Python would warn "never awaited" when it is collected."""
    if inspect.iscoroutine(work):
        work.close()
