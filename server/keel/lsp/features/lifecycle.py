"""``initialize`` / ``initialized`` / ``shutdown``, settings and progress cancellation.

The workspace root and ``initializationOptions`` are read at ``initialize``; once the client
is ready the log handler starts sending, the ``keel`` section of ``workspace/configuration``
is pulled (when the client supports it) and a workspace where Keel ran before gets its
latest session loaded, so status and hovers work right after a reconnect.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types as T

from keel.lsp import sessions
from keel.lsp.convert import uri_to_fs

if TYPE_CHECKING:
    from keel.lsp.server import KeelLanguageServer

log = logging.getLogger(__name__)


def _root(params: T.InitializeParams) -> Path | None:
    folders = params.workspace_folders or []
    uri = params.root_uri or (folders[0].uri if folders else None)
    if uri:
        return uri_to_fs(uri)
    return Path(params.root_path) if params.root_path else None


def register(server: KeelLanguageServer) -> None:
    async def report_problems() -> None:
        server.report_problems((await server.resolve_settings()).problems)

    def client_settings(value: Any) -> None:
        if value != server.client_settings:
            server.client_settings = value
            server.settings_changed()

    async def pull_configuration() -> None:
        if not server.supports("workspace.configuration", False):
            return
        params = T.ConfigurationParams(items=[T.ConfigurationItem(section="keel")])
        try:
            values = await server.workspace_configuration_async(params)
        except Exception as exc:
            log.warning("workspace/configuration failed: %s", exc)
            return
        client_settings(values[0] if values else None)

    @server.feature(T.INITIALIZE)
    def initialize(params: T.InitializeParams) -> None:
        server.root = _root(params)
        server.init_options = params.initialization_options

    @server.feature(T.INITIALIZED)
    async def initialized(params: T.InitializedParams) -> None:
        if server.log_handler is not None:
            server.log_handler.connect(server.notify_log, asyncio.get_running_loop())
        log.info("Keel serving %s", server.root or "(no workspace folder)")
        await pull_configuration()
        await report_problems()
        await sessions.load_latest(server)

    @server.feature(T.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def configuration_changed(params: T.DidChangeConfigurationParams) -> None:
        if server.supports("workspace.configuration", False):
            await pull_configuration()
        else:
            settings: Any = params.settings
            if not isinstance(settings, dict) or not isinstance(settings.get("keel"), dict):
                return
            client_settings(settings["keel"])
        await report_problems()

    @server.feature(T.WINDOW_WORK_DONE_PROGRESS_CANCEL)
    def cancel_progress(params: T.WorkDoneProgressCancelParams) -> None:
        session_id = server.reporter.session_of(params.token)
        if session_id is not None:
            log.info("progress %s cancelled: aborting session %s", params.token, session_id)
            sessions.abort(server, session_id)

    @server.feature(T.SHUTDOWN)
    async def shutdown(params: None) -> None:
        await server.close()
