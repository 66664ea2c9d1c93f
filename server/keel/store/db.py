"""The session store (docs/explanation/sessions.md): one SQLite file per workspace,
``.keel/keel.db``.

Why SQLite in WAL mode with ``synchronous=NORMAL``: the store is what ``keel resume`` trusts after
a crash or kill, so every write is its own committed transaction, and readers (``keel status``,
``keel logs``, the dashboard) never block the running session. A commit reaches the WAL file
(the operating system's cache) before the call returns, so it survives the process being
killed at any point; it is synced to the disk at each checkpoint rather than at each commit, so
a power loss can take the last transactions with it but never corrupts the file
(docs/explanation/sessions.md says why that is enough for resume). One transaction is one trip
to the connection's thread, not one per statement.

Why the schema is a list of migrations keyed by ``PRAGMA user_version``: a store written by an
older Keel is upgraded in place, inside a transaction, never recreated; one written by a newer
Keel is refused rather than damaged.

Why every record passes through a redactor before it is written: model replies, command
output, bundles and events can quote an API key, and a secret that reached the file stays in
it (and in its backups). Only identifiers (session, node and step ids, states, tiers, models)
are written as they are, since lookups depend on them.

A file that is not a SQLite database (corrupt, truncated, something else) is never deleted or
overwritten: opening it raises :class:`KeelError` and leaves the bytes as they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

from keel.engine.events import Event
from keel.engine.ports import KeelError
from keel.engine.records import (
    ApprovalRecord,
    AttemptRecord,
    CallTotals,
    EscalationRecord,
    EventRecord,
    JsonObject,
    ModelCall,
    NodeRecord,
    PlanRecord,
    RunRecord,
    SessionRecord,
    StepRecord,
    StructuredModeRecord,
    TransitionRecord,
)
from keel.engine.redaction import Redactor, redact

STORE_DIR = ".keel"
STORE_FILE = "keel.db"
_SQLITE_MAGIC = b"SQLite format 3\x00"

#: Schema migrations, applied in order; ``PRAGMA user_version`` counts those applied.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        task TEXT NOT NULL,
        config TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        outcome TEXT,
        totals TEXT
    );
    CREATE TABLE plan (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        plan TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE nodes (
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        node_id TEXT NOT NULL,
        title TEXT NOT NULL DEFAULT '',
        kind TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (session_id, node_id)
    );
    CREATE TABLE node_transitions (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        node_id TEXT NOT NULL,
        state TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        at TEXT NOT NULL
    );
    CREATE TABLE attempts (
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        node_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        bundle TEXT,
        energy TEXT NOT NULL,
        evidence TEXT NOT NULL,
        stable INTEGER NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (session_id, node_id, attempt)
    );
    CREATE TABLE model_calls (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        tier TEXT NOT NULL,
        model TEXT NOT NULL,
        node_id TEXT,
        attempt INTEGER,
        schema_name TEXT,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL NOT NULL DEFAULT 0,
        priced INTEGER NOT NULL DEFAULT 1,
        latency_s REAL NOT NULL DEFAULT 0,
        ok INTEGER NOT NULL,
        error TEXT,
        prompt TEXT,
        response TEXT,
        at TEXT NOT NULL
    );
    CREATE TABLE approvals (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        node_id TEXT NOT NULL,
        decision TEXT NOT NULL,
        actor TEXT NOT NULL,
        ledger_sha TEXT,
        note TEXT NOT NULL DEFAULT '',
        at TEXT NOT NULL
    );
    CREATE TABLE escalations (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        node_id TEXT NOT NULL,
        report TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        type TEXT NOT NULL,
        payload TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX node_transitions_by_session ON node_transitions (session_id, id);
    CREATE INDEX model_calls_by_session ON model_calls (session_id, id);
    CREATE INDEX approvals_by_session ON approvals (session_id, id);
    CREATE INDEX escalations_by_session ON escalations (session_id, id);
    CREATE INDEX events_by_session ON events (session_id, id);
    CREATE INDEX plan_by_session ON plan (session_id, id);
    """,
    # 2: crash safety. Every side-effecting step gets an intent row before it runs and its
    # result after; a resumed session replays recorded results instead of repeating them.
    """
    CREATE TABLE steps (
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        step_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        intent TEXT NOT NULL,
        result TEXT,
        intent_at TEXT NOT NULL,
        result_at TEXT,
        PRIMARY KEY (session_id, step_id)
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        abort_requested INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_by_session ON runs (session_id, id);
    """,
    # 3: every model call's prompt and reply sizes (kept with or without --log-llm; NULL in
    # calls recorded before), and approvals as durable intents: recorded before the ledger
    # commit with the bundle they approve and the files chosen, the commit's sha added after.
    """
    ALTER TABLE model_calls ADD COLUMN prompt_chars INTEGER;
    ALTER TABLE model_calls ADD COLUMN reply_chars INTEGER;
    ALTER TABLE approvals ADD COLUMN bundle_id TEXT;
    ALTER TABLE approvals ADD COLUMN files TEXT;
    """,
    # 4: baselines. What the workspace's own tests and checker report at a commit before any
    # node runs, per environment (the project's interpreter), reused while HEAD is unchanged.
    """
    CREATE TABLE baselines (
        head TEXT NOT NULL,
        environment TEXT NOT NULL,
        record TEXT NOT NULL,
        measured_at TEXT NOT NULL,
        PRIMARY KEY (head, environment)
    );
    """,
    # 5: how each openai-compatible endpoint takes structured output (json_schema,
    # json_object, tools or prompt), found on its first refusal and kept across sessions.
    """
    CREATE TABLE structured_modes (
        endpoint TEXT NOT NULL,
        model TEXT NOT NULL,
        mode TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (endpoint, model)
    );
    """,
]

_JSON_COLUMNS = frozenset(
    {
        "config",
        "totals",
        "plan",
        "bundle",
        "energy",
        "evidence",
        "report",
        "payload",
        "intent",
        "result",
        "files",
        "record",
    }
)
_BOOL_COLUMNS = frozenset({"stable", "priced", "ok", "abort_requested"})
_Statement = tuple[str, Sequence[Any]]
R = TypeVar("R")


def store_path(workspace: Path) -> Path:
    """Where a workspace's store lives."""
    return Path(workspace) / STORE_DIR / STORE_FILE


class SqliteStore:
    """The :class:`keel.engine.ports.SessionStore` over aiosqlite. :meth:`session` scopes it
    to one session (:class:`SqliteSessionRecords`, which also has the reads ``keel status``,
    ``logs`` and ``resume`` use). Construct with :meth:`open`."""

    def __init__(
        self, db: aiosqlite.Connection, path: Path, redactor: Redactor | None = None
    ) -> None:
        self._db = db
        self._path = path
        self._redactor = redactor or Redactor({})
        self._write_lock = asyncio.Lock()
        self._closed = False

    @property
    def path(self) -> Path:
        return self._path

    @classmethod
    async def open(cls, path: Path, redactor: Redactor | None = None) -> SqliteStore:
        """Open (creating or upgrading) the store.

        ``path`` is the workspace (the store is ``<path>/.keel/keel.db``) or, when its name ends
        in ``.db``, the database file itself. ``redactor`` scrubs every record before it is
        written (by default of key-shaped strings only; the app passes the secret values).
        """
        db_path = Path(path) if Path(path).name.endswith(".db") else store_path(Path(path))
        await asyncio.to_thread(_check_file, db_path)
        try:
            db = await aiosqlite.connect(db_path, isolation_level=None)
        except sqlite3.Error as err:
            raise _open_error(db_path, err) from err
        try:
            await _configure(db, db_path)
            await _migrate(db, db_path)
        except BaseException:
            await db.close()
            raise
        db.row_factory = sqlite3.Row
        return cls(db, db_path, redactor)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._db.close()

    def session(self, session_id: str) -> SqliteSessionRecords:
        """The store scoped to one session (which need not exist yet)."""
        return SqliteSessionRecords(self, session_id)

    def _text(self, value: str | None) -> str | None:
        """A free-text column, redacted."""
        return None if value is None else self._redactor(str(value))

    def _json(self, value: Any) -> str:
        """A JSON column: every string inside redacted, then serialised."""
        return _dump(redact(value, self._redactor))

    # ----------------------------------------------------------------- sessions

    async def sessions(self, limit: int | None = None) -> list[SessionRecord]:
        """Sessions, newest first."""
        sql = "SELECT * FROM sessions ORDER BY started_at DESC, rowid DESC LIMIT ?"
        return _records(SessionRecord, await self._query(sql, (-1 if limit is None else limit,)))

    async def latest_session_id(self) -> str | None:
        rows = await self.sessions(limit=1)
        return rows[0].id if rows else None

    # ----------------------------------------------------------------- baselines

    async def baseline(self, head: str, environment: str) -> JsonObject | None:
        """The stored baseline; an unreadable one is ``None`` (measured again), not an error."""
        rows = await self._query(
            "SELECT record AS raw FROM baselines WHERE head = ? AND environment = ?",
            (head, environment),
        )
        if not rows:
            return None
        try:
            record = json.loads(rows[0]["raw"])
        except (TypeError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    async def record_baseline(self, head: str, environment: str, record: JsonObject) -> None:
        sql = (
            "INSERT OR REPLACE INTO baselines (head, environment, record, measured_at)"
            " VALUES (?, ?, ?, ?)"
        )
        await self._write([(sql, (head, environment, self._json(record), _now()))])

    async def structured_mode(self, endpoint: str, model: str) -> str | None:
        """The structured-output mode last found to work for ``model`` at ``endpoint``."""
        rows = await self._query(
            "SELECT mode FROM structured_modes WHERE endpoint = ? AND model = ?",
            (endpoint, model),
        )
        return str(rows[0]["mode"]) if rows else None

    async def remember_structured_mode(self, endpoint: str, model: str, mode: str) -> None:
        sql = (
            "INSERT OR REPLACE INTO structured_modes (endpoint, model, mode, updated_at)"
            " VALUES (?, ?, ?, ?)"
        )
        await self._write([(sql, (endpoint, model, mode, _now()))])

    async def structured_modes(self) -> list[StructuredModeRecord]:
        """Every remembered mode, for reports and tests."""
        rows = await self._query(
            "SELECT endpoint, model, mode, updated_at FROM structured_modes ORDER BY endpoint",
            (),
        )
        return _records(StructuredModeRecord, rows)

    # ----------------------------------------------------------------- plumbing

    async def _write(self, statements: Iterable[_Statement]) -> None:
        """Run the statements as one committed transaction.

        Shielded: a caller cancelled mid-write (an aborted session) must not leave the
        connection inside an open transaction; a started write commits or rolls back.
        """
        await asyncio.shield(self._transaction(list(statements)))

    async def _transaction(self, statements: list[_Statement]) -> None:
        async with self._write_lock:
            try:
                # aiosqlite's (untyped) way to run one function on the connection's thread:
                # the whole transaction is one hop there and back, not one per statement.
                on_thread = cast("Callable[..., Awaitable[None]]", self._db._execute)
                await on_thread(_commit, self._db._conn, statements)
            except sqlite3.Error as err:
                raise KeelError(
                    f"cannot write to the session store {self._path}: {_describe(err)}"
                ) from err
            except BaseException:
                await self._rollback()
                raise

    async def _rollback(self) -> None:
        """Undo a failed transaction; SQLite may already have (after an I/O error), and a
        failing rollback must not hide the error that caused it."""
        with contextlib.suppress(sqlite3.Error):
            if self._db.in_transaction:
                await self._db.execute("ROLLBACK")

    async def _query(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        try:
            async with self._db.execute(sql, params) as cursor:
                rows = await cursor.fetchall()
        except sqlite3.Error as err:
            raise KeelError(
                f"cannot read the session store {self._path}: {_describe(err)}"
            ) from err
        try:
            return [_decode(row) for row in rows]
        except ValueError as err:  # a JSON column edited or damaged outside Keel
            raise KeelError(
                f"the session store {self._path} holds a record that is not valid JSON ({err});"
                " it was left untouched"
            ) from err


class SqliteSessionRecords:
    """The store scoped to one session: the :class:`keel.engine.ports.SessionRecords` port
    (what the engine writes) and the reads of ``keel status``, ``logs``, ``resume`` and the
    editor. Every read returns records of :mod:`keel.engine.records`."""

    def __init__(self, store: SqliteStore, session_id: str) -> None:
        self._store = store
        self._id = session_id

    @property
    def session_id(self) -> str:
        return self._id

    # ----------------------------------------------------------------- writes

    async def create_session(self, task: str, config: JsonObject) -> None:
        s = self._store
        sql = "INSERT INTO sessions (id, task, config, started_at) VALUES (?, ?, ?, ?)"
        await s._write([(sql, (self._id, s._text(task), s._json(config), _now()))])

    async def update_session_config(self, values: JsonObject) -> None:
        """Set keys of the session's stored configuration (budgets raised by a resume)."""
        sql = "UPDATE sessions SET config = json_set(config, ?, json(?)) WHERE id = ?"
        s = self._store
        await s._write([(sql, (f"$.{k}", s._json(v), self._id)) for k, v in values.items()])

    async def record_plan(self, plan: JsonObject) -> None:
        """Store the plan and one ``nodes`` row per planned node (state ``queued``).

        A node already known (a re-plan or a resume) keeps its state; title and kind follow
        the new plan.
        """
        s, now = self._store, _now()
        statements: list[_Statement] = [
            (
                "INSERT INTO plan (session_id, plan, created_at) VALUES (?, ?, ?)",
                (self._id, s._json(plan), now),
            )
        ]
        for node in plan.get("nodes", ()):
            title = s._text(node.get("title", ""))
            statements.append(
                (
                    "INSERT INTO nodes (session_id, node_id, title, kind, state, updated_at)"
                    " VALUES (?, ?, ?, ?, 'queued', ?) ON CONFLICT (session_id, node_id)"
                    " DO UPDATE SET title = excluded.title, kind = excluded.kind",
                    (self._id, str(node["id"]), title, _kind(node), now),
                )
            )
        await s._write(statements)

    async def set_node_state(self, node_id: str, state: str, detail: str = "") -> None:
        now = _now()
        await self._store._write(
            [
                (
                    "INSERT INTO nodes (session_id, node_id, state, updated_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (session_id, node_id)"
                    " DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                    (self._id, node_id, str(state), now),
                ),
                (
                    "INSERT INTO node_transitions (session_id, node_id, state, detail, at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (self._id, node_id, str(state), self._store._text(detail), now),
                ),
            ]
        )

    async def record_attempt(self, attempt: AttemptRecord) -> None:
        """Record one attempt; recording the same attempt again (after a resume) replaces it."""
        s, a = self._store, attempt
        sql = (
            "INSERT OR REPLACE INTO attempts"
            " (session_id, node_id, attempt, bundle, energy, evidence, stable, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        bundle = None if a.bundle is None else s._json(a.bundle)
        params = (self._id, a.node_id, a.attempt, bundle, _dump(a.energy), s._json(a.evidence))
        await s._write([(sql, (*params, int(a.stable), _now()))])

    async def record_model_call(self, call: ModelCall) -> None:
        await self._store._write([self._model_call_statement(call)])

    def _model_call_statement(self, call: ModelCall) -> _Statement:
        s = self._store
        sql = (
            "INSERT INTO model_calls (session_id, tier, model, node_id, attempt, schema_name,"
            " input_tokens, output_tokens, cost_usd, priced, latency_s, ok, error, prompt,"
            " response, prompt_chars, reply_chars, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        params = (
            self._id,
            str(call.tier),
            str(call.model),
            call.node_id,
            call.attempt,
            call.schema_name,
            int(call.input_tokens or 0),
            int(call.output_tokens or 0),
            float(call.cost_usd or 0.0),
            int(bool(call.priced)),
            float(call.latency_s or 0.0),
            int(bool(call.ok)),
            s._text(call.error),
            s._text(call.prompt),
            s._text(call.response),
            call.prompt_chars,
            call.reply_chars,
            _now(),
        )
        return (sql, params)

    async def record_approval(
        self,
        node_id: str,
        decision: str,
        actor: str,
        ledger_sha: str | None,
        note: str = "",
        *,
        bundle: str | None = None,
        files: Sequence[str] | None = None,
    ) -> None:
        sql = (
            "INSERT INTO approvals (session_id, node_id, decision, actor, ledger_sha, note,"
            " bundle_id, files, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        chosen = None if files is None else _dump(list(files))
        params = (self._id, node_id, decision, actor, ledger_sha, self._store._text(note), bundle)
        await self._store._write([(sql, (*params, chosen, _now()))])

    async def confirm_approval(self, node_id: str, ledger_sha: str, actor: str) -> ApprovalRecord:
        """The node's approved intent now has its commit, and the commit's approver; without
        one (a store from before approvals were intents), an approval row is added. Confirming
        a commit again (a resume after a kill) changes nothing."""
        committed = (
            "SELECT * FROM approvals WHERE session_id = ? AND node_id = ? AND ledger_sha = ?"
            " ORDER BY id DESC"
        )
        done = await self._read(ApprovalRecord, committed, (node_id, ledger_sha))
        if done:
            return done[0]
        pending = await self._pending(node_id)
        if pending is not None:
            sql = "UPDATE approvals SET ledger_sha = ?, actor = ? WHERE id = ?"
            await self._store._write([(sql, (ledger_sha, actor, pending.id))])
            return replace(pending, ledger_sha=ledger_sha, actor=actor)
        await self.record_approval(node_id, "approved", actor, ledger_sha)
        (added, *_) = await self._read(ApprovalRecord, committed, (node_id, ledger_sha))
        return added

    async def pending_approval(self, node_id: str, bundle: str) -> ApprovalRecord | None:
        """The node's newest approval, if it approved ``bundle`` and has no commit yet."""
        row = await self._pending(node_id)
        return row if row is not None and row.bundle_id == bundle else None

    async def _pending(self, node_id: str) -> ApprovalRecord | None:
        rows = await self._read(
            ApprovalRecord,
            "SELECT * FROM approvals WHERE session_id = ? AND node_id = ? ORDER BY id DESC LIMIT 1",
            (node_id,),
        )
        if rows and rows[0].decision == "approved" and rows[0].ledger_sha is None:
            return rows[0]
        return None

    async def record_escalation(self, node_id: str, report: JsonObject) -> None:
        sql = "INSERT INTO escalations (session_id, node_id, report, at) VALUES (?, ?, ?, ?)"
        await self._store._write([(sql, (self._id, node_id, self._store._json(report), _now()))])

    async def record_event(self, event: Event) -> None:
        """Store one engine event whole, as ``--json`` prints it, keyed by its ``type``."""
        sql = "INSERT INTO events (session_id, type, payload, at) VALUES (?, ?, ?, ?)"
        at = event.ts or _now()
        payload = self._store._json(event.to_json())
        await self._store._write([(sql, (self._id, event.type.value, payload, at))])

    async def finish_session(self, outcome: str, totals: JsonObject) -> None:
        sql = "UPDATE sessions SET finished_at = ?, outcome = ?, totals = ? WHERE id = ?"
        params = (_now(), outcome, self._store._json(totals), self._id)
        await self._store._write([(sql, params)])

    async def begin_step(self, step_id: str, kind: str, detail: JsonObject) -> None:
        """The intent record: written (and synced) before the step's side effect."""
        sql = (
            "INSERT INTO steps (session_id, step_id, kind, intent, intent_at)"
            " VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (session_id, step_id) DO UPDATE SET intent = excluded.intent"
        )
        params = (self._id, step_id, kind, self._store._json(detail), _now())
        await self._store._write([(sql, params)])

    async def finish_step(
        self, step_id: str, result: JsonObject, call: ModelCall | None = None
    ) -> None:
        """The result record; with ``call``, the model call is recorded in the same transaction."""
        sql = "UPDATE steps SET result = ?, result_at = ? WHERE session_id = ? AND step_id = ?"
        params = (self._store._json(result), _now(), self._id, step_id)
        statements: list[_Statement] = [(sql, params)]
        if call is not None:
            statements.append(self._model_call_statement(call))
        await self._store._write(statements)

    async def begin_run(self, pid: int, host: str) -> int:
        """Record the process now driving the session (for ``keel abort`` and status)."""
        sql = "INSERT INTO runs (session_id, pid, host, started_at) VALUES (?, ?, ?, ?)"
        await self._store._write([(sql, (self._id, pid, host, _now()))])
        rows = await self._store._query(
            "SELECT max(id) AS id FROM runs WHERE session_id = ?", (self._id,)
        )
        return int(rows[0]["id"])

    async def end_run(self, run_id: int) -> None:
        sql = "UPDATE runs SET ended_at = ? WHERE id = ? AND session_id = ?"
        await self._store._write([(sql, (_now(), run_id, self._id))])

    async def request_abort(self) -> list[RunRecord]:
        """Flag the session's live runs for abort; returns them (pid, host) for signalling."""
        sql = "UPDATE runs SET abort_requested = 1 WHERE session_id = ? AND ended_at IS NULL"
        await self._store._write([(sql, (self._id,))])
        return await self.live_runs()

    # ----------------------------------------------------------------- reads

    async def record(self) -> SessionRecord | None:
        """The session itself (None: no such session)."""
        rows = await self._read(SessionRecord, "SELECT * FROM sessions WHERE id = ?")
        return rows[0] if rows else None

    async def call_totals(self) -> CallTotals:
        """Calls, tokens and cost so far, so a resumed session keeps one account."""
        rows = await self._read(
            CallTotals,
            "SELECT count(*) AS calls, coalesce(sum(input_tokens), 0) AS input_tokens,"
            " coalesce(sum(output_tokens), 0) AS output_tokens,"
            " coalesce(sum(cost_usd), 0.0) AS cost_usd,"
            " coalesce(max(cost_usd), 0.0) AS largest_call_usd,"
            " coalesce(sum(priced = 0), 0) AS unpriced"
            " FROM model_calls WHERE session_id = ?",
        )
        return rows[0]

    async def step_result(self, step_id: str) -> JsonObject | None:
        rows = await self._store._query(
            "SELECT result FROM steps WHERE session_id = ? AND step_id = ? AND result IS NOT NULL",
            (self._id, step_id),
        )
        result = rows[0]["result"] if rows else None
        return result if isinstance(result, dict) else None

    async def steps(self) -> list[StepRecord]:
        sql = "SELECT * FROM steps WHERE session_id = ? ORDER BY intent_at, step_id"
        return await self._read(StepRecord, sql)

    async def live_runs(self) -> list[RunRecord]:
        sql = "SELECT * FROM runs WHERE session_id = ? AND ended_at IS NULL ORDER BY id"
        return await self._read(RunRecord, sql)

    async def runs(self) -> list[RunRecord]:
        """Every run of the session, ended or not, oldest first."""
        return await self._read(RunRecord, "SELECT * FROM runs WHERE session_id = ? ORDER BY id")

    async def abort_requested(self) -> bool:
        rows = await self._store._query(
            "SELECT 1 FROM runs WHERE session_id = ? AND ended_at IS NULL AND abort_requested = 1",
            (self._id,),
        )
        return bool(rows)

    async def plan(self) -> PlanRecord | None:
        """The session's latest plan."""
        sql = "SELECT * FROM plan WHERE session_id = ? ORDER BY id DESC LIMIT 1"
        rows = await self._read(PlanRecord, sql)
        return rows[0] if rows else None

    async def nodes(self) -> list[NodeRecord]:
        """The session's nodes in plan order."""
        return await self._read(
            NodeRecord, "SELECT * FROM nodes WHERE session_id = ? ORDER BY rowid"
        )

    async def node_states(self) -> dict[str, str]:
        """Each node's current state, by id."""
        return {node.node_id: node.state for node in await self.nodes()}

    async def transitions(self) -> list[TransitionRecord]:
        sql = "SELECT * FROM node_transitions WHERE session_id = ? ORDER BY id"
        return await self._read(TransitionRecord, sql)

    async def attempts(self, node_id: str | None = None) -> list[AttemptRecord]:
        if node_id is None:
            sql = "SELECT * FROM attempts WHERE session_id = ? ORDER BY rowid"
            return await self._read(AttemptRecord, sql)
        sql = "SELECT * FROM attempts WHERE session_id = ? AND node_id = ? ORDER BY rowid"
        return await self._read(AttemptRecord, sql, (node_id,))

    async def model_calls(self) -> list[ModelCall]:
        sql = "SELECT * FROM model_calls WHERE session_id = ? ORDER BY id"
        return await self._read(ModelCall, sql)

    async def approvals(self) -> list[ApprovalRecord]:
        sql = "SELECT * FROM approvals WHERE session_id = ? ORDER BY id"
        return await self._read(ApprovalRecord, sql)

    async def escalations(self) -> list[EscalationRecord]:
        sql = "SELECT * FROM escalations WHERE session_id = ? ORDER BY id"
        return await self._read(EscalationRecord, sql)

    async def events(self) -> list[EventRecord]:
        return await self._read(
            EventRecord, "SELECT * FROM events WHERE session_id = ? ORDER BY id"
        )

    async def events_after(self, after: int = 0, limit: int = 500) -> list[EventRecord]:
        """The session's events whose id is above ``after``, oldest first, at most ``limit``
        (the API's event stream resumes from a ``Last-Event-ID``)."""
        sql = "SELECT * FROM events WHERE session_id = ? AND id > ? ORDER BY id LIMIT ?"
        return await self._read(EventRecord, sql, (after, limit))

    async def _read(self, kind: type[R], sql: str, params: Sequence[Any] = ()) -> list[R]:
        """Rows of ``sql`` (its first parameter is the session id) as ``kind`` records."""
        return _records(kind, await self._store._query(sql, (self._id, *params)))


# --------------------------------------------------------------------- opening


def _check_file(db_path: Path) -> None:
    """Create ``.keel/``; refuse an existing non-empty file that is not a SQLite database."""
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        if not db_path.exists():
            return
        with db_path.open("rb") as fh:
            header = fh.read(len(_SQLITE_MAGIC))
    except OSError as err:
        raise KeelError(f"cannot open the session store {db_path}: {err.strerror or err}") from err
    if header and header != _SQLITE_MAGIC:
        raise _open_error(db_path, "not a SQLite database")


async def _configure(db: aiosqlite.Connection, db_path: Path) -> None:
    """Validate the file with reads first, then switch on WAL and the rest."""
    try:
        await db.execute("PRAGMA busy_timeout = 5000")
        await db.execute("PRAGMA foreign_keys = ON")
        async with db.execute("SELECT count(*) FROM sqlite_master") as cursor:
            await cursor.fetchall()
        async with db.execute("PRAGMA journal_mode = WAL") as cursor:
            await cursor.fetchall()
        await db.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.OperationalError as err:
        if "locked" in str(err) or "busy" in str(err):
            raise KeelError(f"the session store {db_path} is locked by another process") from err
        if "readonly" in str(err) or _disk_trouble(err):
            raise KeelError(
                f"cannot open the session store {db_path}: {_describe(err)}; Keel needs to "
                f"write to {db_path.parent}"
            ) from err
        raise _open_error(db_path, err) from err
    except sqlite3.Error as err:
        raise _open_error(db_path, err) from err


def _commit(conn: sqlite3.Connection, statements: list[_Statement]) -> None:
    """Run ``statements`` as one transaction on the connection's own thread: all of them are
    committed, or (on any error) none is."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, params in statements:
            conn.execute(sql, params)
        conn.execute("COMMIT")
    except BaseException:
        # SQLite may already have rolled back (after an I/O error); a failing rollback must
        # not hide the error that caused it.
        with contextlib.suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        raise


async def _migrate(db: aiosqlite.Connection, db_path: Path) -> None:
    try:
        version = await _user_version(db)
    except sqlite3.Error as err:
        raise KeelError(f"cannot read the session store {db_path}: {_describe(err)}") from err
    if version > len(MIGRATIONS):
        raise KeelError(
            f"the session store {db_path} has schema version {version}, newer than this Keel "
            f"understands ({len(MIGRATIONS)}); upgrade Keel"
        )
    for number, sql in enumerate(MIGRATIONS[version:], start=version + 1):
        try:
            await db.executescript(
                f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {number};\nCOMMIT;"
            )
        except sqlite3.Error as err:
            with contextlib.suppress(sqlite3.Error):
                if db.in_transaction:
                    await db.execute("ROLLBACK")
            raise KeelError(
                f"cannot upgrade the session store {db_path}: {_describe(err)}"
            ) from err


async def _user_version(db: aiosqlite.Connection) -> int:
    async with db.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


def _disk_trouble(err: sqlite3.Error) -> bool:
    """SQLITE_FULL or an I/O error: the disk is full (or a file size limit was reached)."""
    name = str(getattr(err, "sqlite_errorname", ""))
    return name.startswith(("SQLITE_FULL", "SQLITE_IOERR"))


def _describe(err: sqlite3.Error) -> str:
    if _disk_trouble(err):
        return f"{err} (is the disk full?)"
    return str(err)


def _open_error(db_path: Path, cause: object) -> KeelError:
    return KeelError(f"{db_path} is not a valid Keel store ({cause}); it was left untouched")


# --------------------------------------------------------------------- values


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _kind(node: Mapping[str, Any]) -> str:
    kind = node.get("kind", "")
    return str(getattr(kind, "value", kind))


def _records(kind: type[R], rows: Iterable[Mapping[str, Any]]) -> list[R]:
    """Decoded rows as records: each a ``kind`` built from the columns it names."""
    names = [f.name for f in fields(kind)]  # type: ignore[arg-type]
    build = cast("Callable[..., R]", kind)
    return [build(**{name: row[name] for name in names if name in row}) for row in rows]


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in row.keys():
        value = row[key]
        if key in _JSON_COLUMNS and isinstance(value, str):
            value = json.loads(value)
        elif key in _BOOL_COLUMNS and value is not None:
            value = bool(value)
        out[key] = value
    return out


__all__ = ["MIGRATIONS", "SqliteSessionRecords", "SqliteStore", "store_path"]
