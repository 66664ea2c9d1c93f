"""In-memory doubles of what the language server's services talk to.

A recording client port (what would have gone to the editor), a workspace host whose ledger
and store are dictionaries, and an engine whose run is a script over the real event sink and
approver the sessions service gives it. The services under test and their bookkeeping
(``BundleRegistry``, ``DocumentTracker``, ``EditorDiagnostics``, ``Scoring``) are the real ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from lsprotocol import types as T

from keel.engine.models import LedgerEntry
from keel.engine.ports import ApprovalRequest, Approver, EventSink, KeelError
from keel.engine.records import (
    AttemptRecord,
    JsonObject,
    NodeRecord,
    PlanRecord,
    SessionRecord,
)
from keel.lsp.bundles import BundleRegistry
from keel.lsp.client import ClientPort, Spawn, close_unstarted
from keel.lsp.convert import EditCaps
from keel.lsp.documents import DocumentTracker, EditorDiagnostics
from keel.lsp.scoring import Scoring
from keel.lsp.views import SessionView
from keel.lsp.workspace import Workspace

ResultT = TypeVar("ResultT")


class RecordingClient:
    """The client port: records what it sends; ``apply_edit`` answers ``applied``."""

    def __init__(self, *, applied: bool = True, can_apply: bool = True) -> None:
        self.closing = False
        self.sent: list[tuple[str, Any]] = []
        self.shown: list[str] = []
        self.edits: list[T.ApplyWorkspaceEditParams] = []
        self.applied = applied
        self.capabilities: dict[str, Any] = {
            "workspace.apply_edit": can_apply,
            "window.work_done_progress": True,
        }
        #: Awaited inside ``apply_edit`` (a test holds the editor there).
        self.while_applying: Callable[[], Awaitable[None]] | None = None
        self.answer: T.MessageActionItem | None = None
        self.progress: list[str] = []

    def notify(self, method: str, params: Any) -> None:
        if not self.closing:
            self.sent.append((method, params))

    def show(self, message: str, kind: T.MessageType = T.MessageType.Info) -> None:
        self.shown.append(message)

    def supports(self, path: str, default: Any = False) -> Any:
        return self.capabilities.get(path, default)

    def edit_caps(self) -> EditCaps:
        return EditCaps(
            document_changes=True,
            resource_operations=frozenset({"create", "delete"}),
            annotations=False,
        )

    def position_encoding(self) -> str:
        return str(T.PositionEncodingKind.Utf16)

    async def apply_edit(self, params: T.ApplyWorkspaceEditParams) -> T.ApplyWorkspaceEditResult:
        self.edits.append(params)
        if self.while_applying is not None:
            await self.while_applying()
        if self.applied:
            return T.ApplyWorkspaceEditResult(applied=True)
        return T.ApplyWorkspaceEditResult(applied=False, failure_reason="the user said no")

    async def ask(self, params: T.ShowMessageRequestParams) -> T.MessageActionItem | None:
        self.sent.append(("window/showMessageRequest", params))
        return self.answer

    async def create_progress(self, token: str) -> None:
        self.progress.append(token)

    def forget_progress(self, token: str) -> None:
        pass

    async def refresh_code_lenses(self) -> None:
        pass

    async def configuration(self, params: T.ConfigurationParams) -> list[Any]:
        return [None for _ in params.items]

    def methods(self) -> list[str]:
        return [method for method, _ in self.sent]


class TaskList:
    """:class:`~keel.lsp.client.Spawn` that keeps the tasks for the test to await."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[Any]] = []

    def __call__(self, work: Awaitable[ResultT], name: str) -> asyncio.Task[ResultT]:
        async def wrapper() -> ResultT:
            return await work

        task = asyncio.get_running_loop().create_task(wrapper(), name=name)
        task.add_done_callback(lambda _: close_unstarted(work))
        self.tasks.append(task)
        return task


class MemoryLedger:
    """Files as bytes; a merge is clean only when one side kept the base."""

    def __init__(self, files: Mapping[str, bytes] | None = None) -> None:
        self.files: dict[str, bytes] = dict(files or {})
        self.merges: list[tuple[bytes | None, bytes | None, bytes | None]] = []
        self.log: list[LedgerEntry] = []
        self.before: dict[str, dict[str, bytes | None]] = {}

    async def read(self, path: str) -> bytes | None:
        return self.files.get(path)

    async def merge(
        self, base: bytes | None, ours: bytes | None, theirs: bytes | None
    ) -> bytes | None:
        self.merges.append((base, ours, theirs))
        if ours == base:
            return theirs
        if theirs == base:
            return ours
        if ours is not None and theirs is not None and theirs.startswith(base or b""):
            return ours + theirs[len(base or b"") :]  # an appended proposal onto the buffer
        return None

    async def entries(self, limit: int | None = None) -> list[LedgerEntry]:
        return list(reversed(self.log))[:limit]

    async def show(self, entry: str) -> tuple[LedgerEntry, str]:
        found = next((e for e in self.log if e.sha.startswith(entry)), None)
        if found is None:
            raise KeelError(f"no ledger entry {entry}")
        return found, ""

    async def rollback(self, entry: str) -> str:
        """Put the entry's files back as they were before it (kept in ``before``)."""
        found, _ = await self.show(entry)
        for path in found.files:
            before = self.before[found.sha].get(path)
            if before is None:
                self.files.pop(path, None)
            else:
                self.files[path] = before
        self.log.append(
            LedgerEntry(
                f"r{found.sha}",
                f"revert {found.title}",
                "",
                "",
                "",
                "",
                "user",
                "",
                found.files,
                found.sha,
            )
        )
        return f"r{found.sha}"

    def commit(self, sha: str, title: str, changes: Mapping[str, bytes | None]) -> None:
        """Record a commit of ``changes`` (the engine's ledger commit, in memory)."""
        self.before[sha] = {path: self.files.get(path) for path in changes}
        for path, data in changes.items():
            if data is None:
                self.files.pop(path, None)
            else:
                self.files[path] = data
        self.log.append(
            LedgerEntry(
                sha, title, "s-1", "node-1", "b1", "0.0", "user", "", tuple(sorted(changes))
            )
        )


class MemorySession:
    """One session's records (:class:`~keel.store.db.SessionRecords`'s reads), from the store."""

    def __init__(self, store: MemoryStore, session_id: str) -> None:
        self._store, self.session_id = store, session_id

    async def record(self) -> SessionRecord | None:
        return self._store.records.get(self.session_id)

    async def plan(self) -> PlanRecord | None:
        return None

    async def nodes(self) -> list[NodeRecord]:
        return []

    async def attempts(self, node_id: str | None = None) -> list[AttemptRecord]:
        return []

    async def abort_requested(self) -> bool:
        return self.session_id in self._store.abort_requests


class MemoryStore:
    """The reads the sessions service makes, from dictionaries of typed records."""

    def __init__(self) -> None:
        self.records: dict[str, SessionRecord] = {}
        self.abort_requests: set[str] = set()

    def add(self, session_id: str, task: str, config: JsonObject | None = None) -> None:
        """Store a session that ran before (as ``keel run`` would have left it)."""
        self.records[session_id] = SessionRecord(
            session_id, task, dict(config or {}), "2026-12-05T00:00:00Z"
        )

    async def latest_session_id(self) -> str | None:
        return next(reversed(self.records), None)

    def session(self, session_id: str) -> MemorySession:
        return MemorySession(self, session_id)


#: What a fake session does with the real sink and approver: ``(sink, approver, resumed)``.
Script = Callable[[EventSink, Approver, bool], Awaitable[str]]


@dataclass
class ScriptedEngine:
    """Stands in for ``Engine``: ``run`` plays the script, recording how it was called."""

    script: Script
    sink: EventSink
    approver: Approver
    runs: list[tuple[str, str, bool]]
    editor: Any = None
    plan_scope: Any = None

    async def run(self, task: str, session_id: str, *, resume: bool = False) -> str:
        self.runs.append((task, session_id, resume))
        return await self.script(self.sink, self.approver, resume)


@dataclass
class MemoryHost:
    """A workspace host over the memory ledger and store; its engine plays ``script``."""

    workspace: Path
    ledger: MemoryLedger = field(default_factory=MemoryLedger)
    store: MemoryStore = field(default_factory=MemoryStore)
    script: Script | None = None
    refuse: Exception | None = None
    runs: list[tuple[str, str, bool]] = field(default_factory=list)
    closed: bool = False

    @asynccontextmanager
    async def engine(
        self, task: str, config: Any, *, sink: EventSink, approver: Approver
    ) -> AsyncIterator[ScriptedEngine]:
        if self.refuse is not None:
            raise self.refuse
        assert self.script is not None
        yield ScriptedEngine(self.script, sink, approver, self.runs)

    async def close(self) -> None:
        self.closed = True


def workspace(root: Path, host: MemoryHost) -> Workspace:
    async def opener(path: Path, env: Mapping[str, str]) -> Any:
        return host

    env = {"HOME": str(root / "home"), "XDG_CONFIG_HOME": str(root / "config")}
    made = Workspace(opener, env, warn=lambda message: None)
    made.root = root
    return made


@dataclass
class Editor:
    """The editor's side of the server: open buffers (text by URI) and its diagnostics."""

    texts: dict[str, str] = field(default_factory=dict)
    documents: DocumentTracker = field(init=False)
    diagnostics: EditorDiagnostics = field(init=False)

    def __post_init__(self) -> None:
        self.documents = DocumentTracker(text=self.texts.__getitem__)
        self.diagnostics = EditorDiagnostics(on_change=lambda path: None)

    def open(self, root: Path, path: str, text: str, version: int = 1) -> None:
        uri = (root / path).as_uri()
        self.texts[uri] = text
        self.documents.opened(uri, path, version, text)


def scoring(
    views: Mapping[str, SessionView], bundles: BundleRegistry, editor: Editor, root: Path
) -> Scoring:
    return Scoring(views, bundles, editor.diagnostics, root=lambda: root)


def approval_request(
    bundle_id: str = "b1",
    *,
    changes: Mapping[str, bytes | None] | None = None,
    base: Mapping[str, bytes | None] | None = None,
    v: float = 0.0,
) -> ApprovalRequest:
    return ApprovalRequest(
        "s-1",
        "node-1",
        "Add A",
        bundle_id,
        "",
        {"v_syn": v, "v": v},
        1,
        changes=dict(changes if changes is not None else {"a.py": b"A = 1\n"}),
        base=dict(base if base is not None else {"a.py": None}),
    )


def _conforms(client: RecordingClient, spawn: TaskList) -> tuple[ClientPort, Spawn]:
    """Type-checked by mypy (pyproject's ``files``): the doubles still match their ports."""
    return client, spawn
