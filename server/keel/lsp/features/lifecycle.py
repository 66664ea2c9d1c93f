"""``initialize`` / ``initialized`` / ``shutdown``, settings and progress cancellation.

The workspace root and ``initializationOptions`` are read at ``initialize``; once the client
is ready the log handler starts sending, the ``keel`` section of ``workspace/configuration``
is pulled (when the client supports it) and a workspace where Keel ran before gets its
latest session loaded, so status and hovers work right after a reconnect.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types as T

from keel.lsp.convert import uri_to_fs

if TYPE_CHECKING:
    from pygls.lsp.server import LanguageServer

    from keel.lsp.services import Services

log = logging.getLogger(__name__)


def _root(params: T.InitializeParams) -> Path | None:
    folders = params.workspace_folders or []
    uri = params.root_uri or (folders[0].uri if folders else None)
    if uri:
        return uri_to_fs(uri)
    return Path(params.root_path) if params.root_path else None


def register(ls: LanguageServer, services: Services) -> None:
    async def report_problems() -> None:
        services.workspace.report_problems((await services.workspace.resolve_settings()).problems)

    def client_settings(value: Any, *, first: bool) -> None:
        """Take the editor's settings; a change (not the first pull) makes the problems
        worth saying again. The first pull may answer after a session already reported
        the problems of the initialization options: those are not said twice."""
        if value != services.workspace.client_settings:
            services.workspace.client_settings = value
            if not first:
                services.workspace.settings_changed()

    async def pull_configuration(*, first: bool = False) -> None:
        if not services.client.supports("workspace.configuration", False):
            return
        params = T.ConfigurationParams(items=[T.ConfigurationItem(section="keel")])
        try:
            values = await services.client.configuration(params)
        except Exception as exc:
            log.warning("workspace/configuration failed: %s", exc)
            return
        client_settings(values[0] if values else None, first=first)

    @ls.feature(T.INITIALIZE)
    def initialize(params: T.InitializeParams) -> None:
        services.workspace.root = _root(params)
        services.workspace.init_options = params.initialization_options

    @ls.feature(T.INITIALIZED)
    async def initialized(params: T.InitializedParams) -> None:
        services.connect_log()
        log.info("Keel serving %s", services.workspace.root or "(no workspace folder)")
        await pull_configuration(first=True)
        await report_problems()
        await services.sessions.load_latest()

    @ls.feature(T.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def configuration_changed(params: T.DidChangeConfigurationParams) -> None:
        if services.client.supports("workspace.configuration", False):
            await pull_configuration()
        else:
            settings: Any = params.settings
            if not isinstance(settings, dict) or not isinstance(settings.get("keel"), dict):
                return
            client_settings(settings["keel"], first=False)
        await report_problems()

    @ls.feature(T.WINDOW_WORK_DONE_PROGRESS_CANCEL)
    def cancel_progress(params: T.WorkDoneProgressCancelParams) -> None:
        session_id = services.reporter.session_of(params.token)
        if session_id is not None:
            log.info("progress %s cancelled: aborting session %s", params.token, session_id)
            services.sessions.abort(session_id)

    @ls.feature(T.SHUTDOWN)
    async def shutdown(params: None) -> None:
        await services.close()
