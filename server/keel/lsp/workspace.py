"""The workspace folder the editor opened: its root, its settings and its shared host.

The root and the client's settings arrive with ``initialize`` and
``workspace/configuration``; the host (the store and the ledger every session shares) is
opened on first use through the opener the composition root injected. Settings are resolved
in a worker thread (they read ``keel.toml`` and the user's config file) and each problem with
them is shown once, until the editor's settings change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from keel.engine.ports import KeelError
from keel.lsp.host import WorkspaceHost, WorkspaceOpener
from keel.lsp.settings import Resolved, resolve


class Workspace:
    """The editor's workspace folder, its settings and (once used) its host."""

    def __init__(
        self,
        open_workspace: WorkspaceOpener,
        env: Mapping[str, str],
        warn: Callable[[str], None],
    ) -> None:
        self._open = open_workspace
        self.env = dict(env)
        self._warn = warn
        self.root: Path | None = None
        self.init_options: Any = None
        self.client_settings: Any = None
        self._host: WorkspaceHost | None = None
        self._host_lock: asyncio.Lock | None = None
        self._reported: set[str] = set()

    # -- settings --------------------------------------------------------------------------

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
                self._warn(f"Keel: {problem}")

    def settings_changed(self) -> None:
        """The editor's settings changed: their problems are worth saying again."""
        self._reported.clear()

    # -- the host ----------------------------------------------------------------------------

    def require_root(self) -> Path:
        if self.root is None:
            raise KeelError("Keel needs a workspace folder: open a folder, not a single file")
        return self.root

    async def host(self) -> WorkspaceHost:
        """The workspace's shared store and ledger, opened on first use."""
        root = self.require_root()
        if self._host_lock is None:
            self._host_lock = asyncio.Lock()
        async with self._host_lock:
            if self._host is None:
                self._host = await self._open(root, self.env)
            return self._host

    @property
    def opened_host(self) -> WorkspaceHost | None:
        return self._host

    def has_store(self) -> bool:
        """Whether Keel ran here before (or the host is open): worth loading sessions."""
        root = self.root
        return self._host is not None or (root is not None and (root / ".keel/keel.db").is_file())

    async def close(self) -> None:
        if self._host is not None:
            host, self._host = self._host, None
            await host.close()
