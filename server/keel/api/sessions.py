"""The sessions the API runs, and what it reads about every session of its workspaces.

Why sessions run inside the server (through ``keel.app.open_engine``, like ``keel agent``):
the approver has to be this process, so a ``POST .../approve`` reaches the waiting node
directly. Everything durable is in each workspace's store and git: a killed server leaves
sessions without an outcome and without a live run, which the API lists as
``interrupted`` and ``POST .../resume`` continues.

One session per workspace at a time, by the same lock as the CLI and the editor
(``.keel/session.lock``); several workspaces run at once. Workspaces must lie under one of
the allowed roots given to the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel import reports
from keel.app import (
    SqliteSessionRecords,
    SqliteStore,
    open_engine,
    open_ledger,
    workspace_busy,
)
from keel.bundles.diff import unified_diff
from keel.bundles.hunks import Hunk, bundle_hunks, file_hunks, unknown_ids
from keel.config import KeelConfig, load_config
from keel.engine.events import Event, EventKind
from keel.engine.planning import PreviousSession
from keel.engine.ports import ApprovalRequest, ConfigError, Decision, KeelError, Settlement
from keel.engine.records import EventRecord, RunRecord, SessionRecord
from keel.engine.session import SessionResult, new_session_id

from .feed import Feed

log = logging.getLogger(__name__)

#: Sessions read per workspace when listing.
LIST_LIMIT = 200


class ApiError(Exception):
    """An answer other than success: the HTTP status, a short code and a clear message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def conflict(message: str) -> ApiError:
    return ApiError(409, "conflict", message)


@dataclass
class Pending:
    """A bundle waiting for a decision, and the settlement of an approved one."""

    request: ApprovalRequest
    decision: asyncio.Future[Decision]
    settlement: asyncio.Future[Settlement]
    claimed: bool = False


def hunk_json(hunk: Hunk) -> dict[str, Any]:
    """A hunk as the JSON diff gives it (the keys of the LSP ``DiffHunk``)."""
    return {
        "id": hunk.id,
        "oldStart": hunk.old_start,
        "oldLines": hunk.old_lines,
        "newStart": hunk.new_start,
        "newLines": hunk.new_lines,
        "header": hunk.header,
        "removed": list(hunk.removed),
        "added": list(hunk.added),
    }


class ApiApprover:
    """The :class:`~keel.engine.ports.Approver` of a session the API runs: a bundle waits
    until ``approve``, ``reject`` or ``correct`` decides it (``cautious`` waits for every
    node). Commands outside a plugin's allow-list are refused: nobody is asked."""

    def __init__(self) -> None:
        self.pending: dict[str, Pending] = {}

    @property
    def undecided(self) -> list[Pending]:
        """The bundles nobody has decided yet (an approved one waits for its commit)."""
        return [p for p in self.pending.values() if not p.claimed]

    async def review(self, request: ApprovalRequest) -> Decision | None:
        loop = asyncio.get_running_loop()
        pending = Pending(request, loop.create_future(), loop.create_future())
        self.pending[request.bundle_id] = pending
        try:
            return await pending.decision
        finally:
            decision = pending.decision
            if not decision.done() or decision.cancelled() or not decision.result().approved:
                self.pending.pop(request.bundle_id, None)  # an approval waits for settled()

    async def approve_command(self, node_id: str, command: str) -> bool:
        return False

    async def settled(self, request: ApprovalRequest, settlement: Settlement) -> None:
        pending = self.pending.pop(request.bundle_id, None)
        if pending is not None and not pending.settlement.done():
            pending.settlement.set_result(settlement)


@dataclass
class Run:
    """A session this server drives now."""

    session_id: str
    workspace: Path
    approver: ApiApprover = field(default_factory=ApiApprover)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[SessionResult] | None = None


class RunSink:
    """The engine's event sink for a run: the event is stored already; wake its feed."""

    def __init__(self, run: Run, feeds: FeedPoker) -> None:
        self._run = run
        self._feeds = feeds

    def emit(self, event: Event) -> None:
        if event.type in (EventKind.SESSION_STARTED, EventKind.SESSION_RESUMED):
            self._run.started.set()
        self._feeds.poke(self._run.session_id)


class FeedPoker:
    """The feeds by session id (a small seam so the sink does not hold the manager)."""

    def __init__(self) -> None:
        self.feeds: dict[str, Feed] = {}

    def poke(self, session_id: str) -> None:
        feed = self.feeds.get(session_id)
        if feed is not None:
            feed.poke()


class SessionManager:
    """Starts, decides, aborts, resumes and continues sessions; finds any session by id."""

    def __init__(
        self, roots: Sequence[Path], env: Mapping[str, str], *, poll_s: float = 0.02
    ) -> None:
        if not roots:
            raise ConfigError("the API needs at least one allowed workspace root (-w DIR)")
        self._roots = [Path(root).resolve() for root in roots]
        self._env = dict(env)
        self._poll_s = poll_s
        self._runs: dict[str, Run] = {}
        self._claimed: set[Path] = set()
        self._where: dict[str, Path] = {}
        self._stores: dict[Path, asyncio.Future[SqliteStore]] = {}
        self._feeds = FeedPoker()

    @property
    def roots(self) -> list[Path]:
        return list(self._roots)

    # ------------------------------------------------------------------ workspaces

    def workspace(self, raw: str) -> Path:
        """``raw`` as an existing directory under an allowed root (symlinks resolved)."""
        if "\x00" in raw:
            raise ApiError(400, "bad_workspace", "the workspace path contains a NUL byte")
        path = Path(raw).expanduser()
        if not path.is_absolute():
            raise ApiError(400, "bad_workspace", f"the workspace must be an absolute path: {raw}")
        resolved = path.resolve()
        if not any(resolved == root or resolved.is_relative_to(root) for root in self._roots):
            allowed = ", ".join(map(str, self._roots))
            raise ApiError(
                403, "workspace_not_allowed", f"{raw} is outside the allowed roots ({allowed})"
            )
        if not resolved.is_dir():
            raise ApiError(400, "bad_workspace", f"no workspace at {raw} (no such directory)")
        if ".keel" in resolved.parts or ".git" in resolved.parts:
            raise ApiError(400, "bad_workspace", f"{raw} is inside a .keel or .git directory")
        return resolved

    def _known_workspaces(self) -> list[Path]:
        """The roots and their direct subdirectories that have a store, and every workspace
        this server has used."""
        found: list[Path] = []
        for root in self._roots:
            candidates = [root]
            try:
                candidates += sorted(p for p in root.iterdir() if p.is_dir())
            except OSError:
                pass
            found += [p for p in candidates if (p / ".keel" / "keel.db").is_file()]
        found += [w for w in self._where.values() if w not in found]
        return list(dict.fromkeys(found))

    async def _store(self, workspace: Path) -> SqliteStore:
        """The workspace's store for reading, opened once (concurrent callers share the
        opening, so no connection is left unclosed)."""
        opening = self._stores.get(workspace)
        if opening is None:
            opening = asyncio.ensure_future(reports.open_store(workspace))
            self._stores[workspace] = opening
        try:
            return await asyncio.shield(opening)
        except BaseException:
            if opening.done() and (opening.cancelled() or opening.exception() is not None):
                self._stores.pop(workspace, None)
            raise

    async def locate(self, session_id: str) -> tuple[Path, SqliteSessionRecords, SessionRecord]:
        """The session's workspace, its records in that workspace's store, and the session."""
        if len(session_id) > 200:
            raise not_found("no such session")
        workspace = self._where.get(session_id)
        if workspace is not None:
            records = (await self._store(workspace)).session(session_id)
            row = await records.record()
            if row is not None:
                return workspace, records, row
        for candidate in await asyncio.to_thread(self._known_workspaces):
            records = (await self._store(candidate)).session(session_id)
            row = await records.record()
            if row is not None:
                self._where[session_id] = candidate
                return candidate, records, row
        raise not_found(f"no session {session_id} in any workspace under the allowed roots")

    # ------------------------------------------------------------------ reading

    def state(self, session_id: str, row: SessionRecord, running_elsewhere: bool) -> str:
        run = self._runs.get(session_id)
        if run is not None:
            return "awaiting_approval" if run.approver.undecided else "running"
        if running_elsewhere:
            return "running_elsewhere"
        return "finished" if row.outcome else "interrupted"

    async def summary(self, session_id: str) -> dict[str, Any]:
        """``keel status --json`` for the session, with the API's view of it."""
        workspace, _, row = await self.locate(session_id)
        ledger = await reports.ledger_entries(workspace, session_id)
        report = await reports.status_report(await self._store(workspace), row, ledger=ledger)
        elsewhere = report["running"] and session_id not in self._runs
        run = self._runs.get(session_id)
        pending = [] if run is None else [_pending_dict(p) for p in run.approver.undecided]
        return {
            **report,
            "id": session_id,
            "workspace": str(workspace),
            "state": self.state(session_id, row, elsewhere),
            "continues": row.config.get("continues"),
            "pending": pending,
        }

    async def listing(self, workspace: str | None) -> list[dict[str, Any]]:
        places = (
            [await self.checked(workspace)]
            if workspace
            else await asyncio.to_thread(self._known_workspaces)
        )
        out: list[dict[str, Any]] = []
        for place in places:
            if not (place / ".keel" / "keel.db").is_file():
                continue
            store = await self._store(place)
            for row in await store.sessions(LIST_LIMIT):
                self._where.setdefault(row.id, place)
                live = [
                    r
                    for r in await store.session(row.id).live_runs()
                    if reports.pid_alive(r.pid, r.host)
                ]
                elsewhere = bool(live) and row.id not in self._runs
                out.append(
                    {
                        "id": row.id,
                        "task": reports.redact_row({"t": row.task})["t"],
                        "workspace": str(place),
                        "started_at": row.started_at,
                        "finished_at": row.finished_at,
                        "outcome": row.outcome,
                        "state": self.state(row.id, row, elsewhere),
                    }
                )
        out.sort(key=lambda s: str(s["started_at"]), reverse=True)
        return out

    async def feed(self, session_id: str) -> Feed:
        _, records, _ = await self.locate(session_id)
        feeds = self._feeds.feeds
        for forgotten in [s for s, f in feeds.items() if f.idle and s not in self._runs]:
            del feeds[forgotten]  # finished and unwatched: no events kept in memory
        feed = feeds.get(session_id)
        if feed is None:

            async def read(after: int, limit: int) -> list[EventRecord]:
                return await records.events_after(after, limit)

            async def alive() -> bool:
                return session_id in self._runs or writing(await records.runs())

            feed = Feed(read, alive, self._poll_s)
            feeds[session_id] = feed
        return feed

    async def diff(self, session_id: str, bundle: str) -> str:
        workspace, _, _ = await self.locate(session_id)
        run = self._runs.get(session_id)
        if run is not None and bundle in run.approver.pending:
            return run.approver.pending[bundle].request.diff
        if len(bundle) >= 8:
            ledger = await open_ledger(workspace)
            for entry in await ledger.entries(None):
                if entry.session == session_id and entry.bundle.startswith(bundle):
                    _, patch = await ledger.show(entry.sha)
                    return patch
        raise not_found(f"no bundle {bundle} pending or committed in session {session_id}")

    async def diff_files(self, session_id: str, bundle: str) -> dict[str, Any]:
        """A pending bundle's files with their hunks (the ids ``approve``/``reject`` take)."""
        await self.locate(session_id)
        run = self._runs.get(session_id)
        pending = run.approver.pending.get(bundle) if run is not None else None
        if pending is None:
            raise not_found(f"no bundle {bundle} pending in session {session_id}")
        request = pending.request
        files = []
        for path in sorted(request.changes):
            before, after = request.base.get(path), request.changes[path]
            change = "create" if before is None else "delete" if after is None else "modify"
            files.append(
                {
                    "path": path,
                    "change": change,
                    "unifiedDiff": unified_diff(path, before, after),
                    "hunks": [hunk_json(h) for h in file_hunks(path, before, after)],
                }
            )
        return {"bundle": bundle, "files": files}

    async def ledger(self, workspace: str, recent: int | None) -> list[dict[str, Any]]:
        place = await self.checked(workspace)
        try:
            ledger = await open_ledger(place)
        except KeelError as exc:
            raise ApiError(400, "no_ledger", str(exc)) from exc
        return [
            {key: list(v) if isinstance(v, tuple) else v for key, v in vars(e).items()}
            for e in await ledger.entries(recent)
        ]

    # ------------------------------------------------------------------ running

    async def checked(self, raw: str) -> Path:
        """:meth:`workspace` off the event loop (it resolves paths on disk)."""
        return await asyncio.to_thread(self.workspace, raw)

    async def start(self, task: str, raw_workspace: str, flags: Mapping[str, Any]) -> str:
        workspace = await self.checked(raw_workspace)
        config = self._config(workspace, flags)
        return await self._launch(workspace, new_session_id(), task, config, resume=False)

    async def resume(self, session_id: str, flags: Mapping[str, Any]) -> str:
        workspace, records, row = await self.locate(session_id)
        await self._refuse_running(session_id, records)
        config = self._config(workspace, flags, row.config)
        continues = row.config.get("continues")
        previous = await self._previous(workspace, str(continues) if continues else None)
        await self._launch(workspace, session_id, row.task, config, resume=True, previous=previous)
        return session_id

    async def follow_up(self, session_id: str, task: str, flags: Mapping[str, Any]) -> str:
        workspace, records, row = await self.locate(session_id)
        await self._refuse_running(session_id, records)
        if not row.outcome:
            raise conflict(
                f"session {session_id} has not finished (resume it first); continue follows "
                "up a finished session"
            )
        previous = await self._previous(workspace, session_id)
        config = self._config(workspace, flags, row.config)
        return await self._launch(
            workspace, new_session_id(), task, config, resume=False, previous=previous
        )

    async def abort(self, session_id: str) -> dict[str, Any]:
        _, records, _ = await self.locate(session_id)
        run = self._runs.get(session_id)
        if run is not None and run.task is not None:
            run.task.cancel()
            result = await asyncio.shield(_ended(run.task))
            return {"id": session_id, "outcome": result.outcome if result else None}
        signalled = []
        for live in await records.request_abort():
            if live.host != socket.gethostname():
                continue
            try:
                os.kill(live.pid, signal.SIGTERM)
                signalled.append(live.pid)
            except ProcessLookupError:
                await records.end_run(live.id)
        if not signalled:
            raise conflict(f"session {session_id} is not running")
        return {"id": session_id, "signalled": signalled}

    async def decide(
        self, session_id: str, bundle: str, decision: Decision, *, wait: bool
    ) -> dict[str, Any]:
        await self.locate(session_id)
        run = self._runs.get(session_id)
        pending = run.approver.pending.get(bundle) if run is not None else None
        if pending is None or run is None:
            raise not_found(f"no bundle {bundle} awaits a decision in session {session_id}")
        if pending.claimed or pending.decision.done():
            raise conflict(f"bundle {bundle} is being decided already")
        if decision.hunks is not None:
            hunks = bundle_hunks(pending.request.changes, pending.request.base)
            strangers = unknown_ids(hunks, decision.hunks)
            if strangers:
                known = ", ".join(f"{h.id} ({h.path} {h.header})" for h in hunks) or "none"
                raise ApiError(
                    400,
                    "bad_hunks",
                    f"no hunk {', '.join(strangers)} in bundle {bundle} (its hunks: {known})",
                )
        if decision.files is not None:
            unknown = sorted(set(decision.files) - set(pending.request.changes))
            if unknown:
                files = ", ".join(sorted(pending.request.changes))
                raise ApiError(
                    400,
                    "bad_files",
                    f"not files of bundle {bundle}: {', '.join(unknown)} (its files: {files})",
                )
        pending.claimed = True
        pending.decision.set_result(decision)
        if not wait:
            return {"bundle": bundle, "decision": "rejected"}
        assert run.task is not None
        waiter = asyncio.ensure_future(asyncio.shield(pending.settlement))
        either: set[asyncio.Future[Any]] = {waiter, run.task}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():
            waiter.cancel()
            raise conflict(f"session {session_id} stopped before bundle {bundle} was committed")
        settlement = waiter.result()
        if settlement.ledger_sha is None:
            raise conflict(f"bundle {bundle} was not committed: {settlement.error}")
        return {
            "bundle": bundle,
            "decision": "approved",
            "ledgerEntry": settlement.ledger_sha,
            "committed": list(settlement.committed),
        }

    async def shutdown(self) -> None:
        """End every open event stream (the server stops; clients reconnect later)."""
        for feed in self._feeds.feeds.values():
            await feed.close()

    async def close(self) -> None:
        """Stop the runs (each ends ``aborted``, resumable) and close the stores."""
        for run in list(self._runs.values()):
            if run.task is not None:
                run.task.cancel()
                await _ended(run.task)
        await self.shutdown()
        for opening in self._stores.values():
            with contextlib.suppress(Exception):
                await (await opening).close()
        self._stores.clear()

    # ------------------------------------------------------------------ plumbing

    def _config(
        self,
        workspace: Path,
        flags: Mapping[str, Any],
        session: Mapping[str, Any] | None = None,
    ) -> KeelConfig:
        try:
            return load_config(workspace, self._env, flags=flags, session=session)
        except ConfigError as exc:
            raise ApiError(400, "bad_config", str(exc)) from exc

    async def _refuse_running(self, session_id: str, records: SqliteSessionRecords) -> None:
        if session_id in self._runs:
            raise conflict(f"session {session_id} is running")
        runs = await records.live_runs()
        if any(reports.pid_alive(r.pid, r.host) for r in runs):
            raise conflict(f"session {session_id} is running in another process")

    async def _previous(self, workspace: Path, session_id: str | None) -> PreviousSession | None:
        """The session ``session_id`` of ``workspace``, for a follow-up's architect."""
        if not session_id:
            return None
        records = (await self._store(workspace)).session(session_id)
        row = await records.record()
        if row is None:
            return None
        plan = await records.plan()
        nodes = plan.plan.get("nodes", []) if plan is not None else []
        ledger = await reports.ledger_entries(workspace, session_id) or []
        return PreviousSession(
            session_id=session_id,
            task=row.task,
            outcome=row.outcome or "unfinished",
            reason=row.reason,
            plan=[
                f"{n['id']}: {n.get('title', '')} (owns {', '.join(n.get('owns', [])) or '-'})"
                for n in nodes
            ],
            ledger=[
                f"{e['sha'][:12]} {e['node']} {e['title']}: {', '.join(e['files'])}" for e in ledger
            ],
        )

    async def _launch(
        self,
        workspace: Path,
        session_id: str,
        task: str,
        config: KeelConfig,
        *,
        resume: bool,
        previous: PreviousSession | None = None,
    ) -> str:
        """Run the session in the background; return once it is stored and started, or
        raise why it could not start."""
        if workspace in self._claimed:
            raise conflict(f"a session is already running in {workspace} (started by the API)")
        self._claimed.add(workspace)  # no await between the check and the claim
        try:
            why = await asyncio.to_thread(workspace_busy, workspace)
            if why is not None:
                raise conflict(why)
            run = Run(session_id, workspace)
            feed = self._feeds.feeds.get(session_id)
            if feed is not None:
                feed.reopen()
            run.task = asyncio.create_task(self._drive(run, task, config, resume, previous))
            self._runs[session_id] = run
            started = asyncio.ensure_future(run.started.wait())
            await asyncio.wait({started, run.task}, return_when=asyncio.FIRST_COMPLETED)
            if not run.started.is_set():
                started.cancel()
                raise _startup_error(run.task)
        except BaseException:
            self._claimed.discard(workspace)
            raise
        self._where[session_id] = workspace
        return session_id

    async def _drive(
        self,
        run: Run,
        task: str,
        config: KeelConfig,
        resume: bool,
        previous: PreviousSession | None,
    ) -> SessionResult:
        sink = RunSink(run, self._feeds)
        try:
            async with open_engine(
                run.workspace,
                task,
                config,
                sink=sink,
                approver=run.approver,
                auto_approve=False,
                env=self._env,
                previous=previous,
            ) as engine:
                return await engine.run(task, run.session_id, resume=resume)
        finally:
            self._runs.pop(run.session_id, None)
            self._claimed.discard(run.workspace)
            self._feeds.poke(run.session_id)


def writing(runs: Sequence[RunRecord]) -> bool:
    """Whether another process may still write the session's events: its last run's
    process is alive. A run that has ended still counts while its process exists: a
    session's run ends before its ``session_finished`` event is written."""
    if not runs:
        return False
    last = runs[-1]
    pid, host = last.pid, last.host
    here = host == socket.gethostname()
    if here and pid == os.getpid():
        return False  # this server's own run, and it is no longer in its runs
    if last.ended_at is None:
        return reports.pid_alive(pid, host)
    return here and reports.pid_alive(pid, host)


def _pending_dict(pending: Pending) -> dict[str, Any]:
    request = pending.request
    return {
        "bundle": request.bundle_id,
        "node": request.node_id,
        "title": request.title,
        "files": sorted(request.changes),
        "complexity": request.complexity,
        "energy": dict(request.energy),
    }


async def _ended(task: asyncio.Task[SessionResult]) -> SessionResult | None:
    try:
        return await task
    except asyncio.CancelledError:
        return None
    except Exception:
        return None


def _startup_error(task: asyncio.Task[SessionResult]) -> ApiError:
    if task.cancelled():
        return ApiError(500, "not_started", "the session was cancelled before it started")
    exc = task.exception()
    if isinstance(exc, ConfigError):
        return ApiError(400, "bad_config", str(exc))
    if isinstance(exc, KeelError):
        message = str(exc)
        if "another Keel session is running" in message:
            return conflict(message)
        return ApiError(422, "not_started", message)
    return ApiError(500, "not_started", f"the session could not start: {exc}")
