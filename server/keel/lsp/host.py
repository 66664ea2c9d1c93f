"""What the language server needs from the composition root, as protocols.

``keel.lsp`` never imports ``keel.app`` or an adapter: ``keel.app.create_server`` hands it a
:data:`WorkspaceOpener`, and everything the server does to a workspace (sessions, the ledger,
the store's records) goes through the :class:`WorkspaceHost` it returns. One host per
workspace shares one store and one ledger between every session the server runs, so the
server's sessions never fight over the workspace lock the way two processes would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol

from keel.config import KeelConfig
from keel.engine.modes import ReadOnlyModes
from keel.engine.ports import Approver, EventSink, Ledger, SessionRecords, SessionStore
from keel.engine.records import AttemptRecord, NodeRecord, PlanRecord, SessionRecord
from keel.engine.session import Engine


class SessionReader(SessionRecords, Protocol):
    """One session's records: the engine's write port plus the reads the server shows."""

    async def record(self) -> SessionRecord | None: ...

    async def plan(self) -> PlanRecord | None: ...

    async def nodes(self) -> list[NodeRecord]: ...

    async def attempts(self, node_id: str | None = None) -> list[AttemptRecord]: ...


class StoreReader(SessionStore, Protocol):
    """The session store's write port plus the reads the server shows (status, hover)."""

    def session(self, session_id: str) -> SessionReader: ...

    async def sessions(self, limit: int | None = None) -> list[SessionRecord]: ...

    async def latest_session_id(self) -> str | None: ...


class WorkspaceHost(Protocol):
    """One workspace's adapters, opened once and shared by the server's sessions."""

    @property
    def workspace(self) -> Path: ...

    @property
    def ledger(self) -> Ledger: ...

    @property
    def store(self) -> StoreReader: ...

    def engine(
        self, task: str, config: KeelConfig, *, sink: EventSink, approver: Approver
    ) -> AbstractAsyncContextManager[Engine]:
        """An engine for one session; holds the workspace lock while any session runs."""
        ...

    async def close(self) -> None: ...


#: Opens the host of a workspace; ``env`` is the environment sessions see (keys, base URLs).
WorkspaceOpener = Callable[[Path, Mapping[str, str]], Awaitable[WorkspaceHost]]

#: Builds the read-only modes (``keel.server.plan``, ``keel.server.explain``) of a workspace
#: with a configuration, a task for plugin detection and the environment: model clients and
#: plugins only, nothing that writes (no store, ledger, lock or repository).
ModesOpener = Callable[
    [Path, KeelConfig, str, Mapping[str, str]], AbstractAsyncContextManager[ReadOnlyModes]
]
