"""Read-only queries over a workspace's session store (``.keel/keel.db``) for the dashboard.

Why a query module of its own rather than :class:`keel.store.SqliteStore`: the store opens
for writing (it creates ``.keel/``, migrates, switches on WAL), and the dashboard must be
harmless beside a running agent. Here every read opens the file with ``mode=ro`` (SQLite
refuses any write on that connection), runs its queries in one short read transaction (a
consistent snapshot; WAL writers are never blocked) with a busy timeout, and closes the
connection before the request is answered. Nothing holds a lock between requests.

Every function here is synchronous and runs in a worker thread (``asyncio.to_thread``).
Every string that leaves this module is scrubbed of the reader's credentials and key-shaped
strings again, like ``keel status`` does: the store redacted what the writer knew.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from keel.engine.models import NodeState
from keel.engine.redaction import Redactor, redact, secrets_in
from keel.liveness import run_alive

STORE_RELATIVE = Path(".keel") / "keel.db"
SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_S = 2.0
#: The statuses a session can show (``stopped``: not finished and no process drives it).
STATUSES = ("running", "success", "partial", "failed", "aborted", "stopped")
NODE_STATES = tuple(state.value for state in NodeState)
COMPONENTS = ("v_syn", "v_str", "v_log", "v_boot", "v_sheaf", "v")
CALLS_PER_PAGE = 100
PREVIEW_CHARS = 400
_JSON_COLUMNS = frozenset(
    {"config", "totals", "plan", "bundle", "energy", "evidence", "report", "payload", "files"}
)
#: Event types the decisions page shows (the rest are on other pages or not decisions).
DECISION_EVENTS = (
    "plan_ready",
    "plan_failed",
    "verification",
    "bundle_rejected",
    "bundle_edited",
    "ledger_refused",
    "node_escalated",
    "node_failed",
    "budget_exceeded",
    "session_finished",
)

Row = dict[str, Any]


class StoreUnavailable(Exception):
    """The store cannot be read now: missing, not a database, busy, or of another schema.

    ``kind`` is ``missing``, ``corrupt``, ``busy`` or ``unreadable``; the message says what
    and where, for a page or a terminal.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def store_file(workspace: Path) -> Path:
    return Path(workspace) / STORE_RELATIVE


@contextlib.contextmanager
def reading(path: Path) -> Iterator[sqlite3.Connection]:
    """One read-only snapshot of the store at ``path``; closed on exit, whatever happens."""
    _check(path)
    uri = f"file:{quote(str(path))}?mode=ro"
    try:
        conn = sqlite3.connect(
            uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as err:
        raise _unavailable(path, err) from err
    try:
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("BEGIN")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            yield conn
        except sqlite3.Error as err:
            raise _unavailable(path, err) from err
        finally:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
    finally:
        conn.close()


def _check(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        raise StoreUnavailable("missing", f"no session store at {path}") from None
    except OSError as err:
        raise StoreUnavailable("unreadable", f"cannot read {path}: {err.strerror}") from err
    if header != SQLITE_MAGIC:
        raise StoreUnavailable("corrupt", f"{path} is not a SQLite database (left as it is)")


def _unavailable(path: Path, err: sqlite3.Error) -> StoreUnavailable:
    text = str(err)
    if "locked" in text or "busy" in text:
        return StoreUnavailable("busy", f"the session store {path} is busy; try again")
    if "not a database" in text or "malformed" in text:
        return StoreUnavailable("corrupt", f"{path} is damaged ({text}; left as it is)")
    return StoreUnavailable("unreadable", f"cannot read the session store {path}: {text}")


# --------------------------------------------------------------------------- change signal


def change_stamp(path: Path) -> tuple[int, int, int, int]:
    """A cheap fingerprint of the store's files: any committed write changes it.

    A WAL commit appends to ``keel.db-wal`` (size and mtime change); a checkpoint rewrites
    ``keel.db``. ``stat`` of two files costs microseconds, so the poller can run often.
    """
    stamps = []
    for candidate in (path, path.with_name(path.name + "-wal")):
        try:
            st = candidate.stat()
            stamps += [st.st_size, st.st_mtime_ns]
        except OSError:
            stamps += [-1, -1]
    return (stamps[0], stamps[1], stamps[2], stamps[3])


def data_mark(conn: sqlite3.Connection, session_id: str | None) -> str:
    """What changed for a page: the newest row ids of the tables a session writes."""
    if session_id is None:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM sessions), (SELECT max(rowid) FROM nodes),"
            " (SELECT max(id) FROM node_transitions), (SELECT max(id) FROM model_calls),"
            " (SELECT count(*) FROM sessions WHERE finished_at IS NOT NULL),"
            " (SELECT max(id) FROM runs), (SELECT count(*) FROM runs WHERE ended_at IS NULL)"
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT (SELECT max(id) FROM node_transitions WHERE session_id = :s),"
            " (SELECT max(id) FROM model_calls WHERE session_id = :s),"
            " (SELECT max(id) FROM events WHERE session_id = :s),"
            " (SELECT max(id) FROM approvals WHERE session_id = :s),"
            " (SELECT max(id) FROM plan WHERE session_id = :s),"
            " (SELECT count(*) FROM attempts WHERE session_id = :s),"
            " (SELECT finished_at FROM sessions WHERE id = :s),"
            " (SELECT count(*) FROM runs WHERE session_id = :s AND ended_at IS NULL),"
            " (SELECT group_concat(node_id || '=' || state) FROM nodes WHERE session_id = :s)",
            {"s": session_id},
        ).fetchone()
    return json.dumps(list(row))


def node_states(conn: sqlite3.Connection, session_id: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT node_id, state FROM nodes WHERE session_id = ? ORDER BY rowid", (session_id,)
    )
    return {str(r["node_id"]): str(r["state"]) for r in rows}


# --------------------------------------------------------------------------- sessions


@dataclass(frozen=True)
class Reader:
    """Decodes and scrubs rows; ``alive`` says whether a run's process still exists."""

    redactor: Redactor

    @classmethod
    def for_environment(cls, env: Mapping[str, str] | None = None) -> Reader:
        env = os.environ if env is None else env
        return cls(Redactor(secrets_in(env)))

    def row(self, row: sqlite3.Row | None) -> Row | None:
        return None if row is None else self.decode(row)

    def decode(self, row: sqlite3.Row) -> Row:
        out: Row = {}
        for key in row.keys():
            value = row[key]
            if key in _JSON_COLUMNS and isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    pass  # shown as the text it is
            out[key] = value
        scrubbed = redact(out, self.redactor)
        assert isinstance(scrubbed, dict)
        return scrubbed

    def rows(self, cursor: Iterator[sqlite3.Row] | sqlite3.Cursor) -> list[Row]:
        return [self.decode(r) for r in cursor]

    def alive(self, pid: int, host: str, since: str | None = None) -> bool:
        return run_alive(pid, host, since)


def status_of(session: Mapping[str, Any], running: bool) -> str:
    """``running`` while a live process drives it (also a resumed session that finished
    before), else its outcome, else ``stopped`` (``keel resume`` continues it)."""
    if running:
        return "running"
    if session.get("finished_at") is None:
        return "stopped"
    outcome = str(session.get("outcome") or "")
    return outcome if outcome in STATUSES else "stopped"


def session_list(
    conn: sqlite3.Connection, reader: Reader, *, limit: int, status: str | None = None
) -> list[Row]:
    """The newest sessions with counts, spending and status (``status`` filters)."""
    sql = "SELECT * FROM sessions"
    params: list[Any] = []
    if status in ("success", "partial", "failed", "aborted"):
        sql += " WHERE finished_at IS NOT NULL AND outcome = ?"
        params.append(status)
    elif status == "running":
        sql += (
            " WHERE finished_at IS NULL"
            " OR id IN (SELECT session_id FROM runs WHERE ended_at IS NULL)"
        )
    elif status == "stopped":
        sql += " WHERE finished_at IS NULL"
    sql += " ORDER BY started_at DESC, rowid DESC LIMIT ?"
    # running/stopped are decided by the process table afterwards: read a margin more
    params.append(limit if status not in ("running", "stopped") else limit * 4)
    sessions = reader.rows(conn.execute(sql, params))
    if not sessions:
        return []
    ids = [s["id"] for s in sessions]
    marks = ",".join("?" * len(ids))
    counts: dict[str, dict[str, int]] = {}
    for r in conn.execute(
        f"SELECT session_id, state, count(*) AS n FROM nodes WHERE session_id IN ({marks})"
        " GROUP BY session_id, state",
        ids,
    ):
        counts.setdefault(r["session_id"], {})[r["state"]] = int(r["n"])
    live: dict[str, list[int]] = {}
    for r in conn.execute(
        "SELECT session_id, pid, host, started_at FROM runs WHERE ended_at IS NULL"
        f" AND session_id IN ({marks})",
        ids,
    ):
        if reader.alive(int(r["pid"]), str(r["host"]), r["started_at"]):
            live.setdefault(r["session_id"], []).append(int(r["pid"]))
    spent: dict[str, Row] = {
        s["id"]: t for s in sessions if s["id"] not in live and (t := finished_totals(s))
    }
    open_ids = [i for i in ids if i not in spent]
    if open_ids:
        for r in conn.execute(
            f"{_SPENT} WHERE session_id IN ({','.join('?' * len(open_ids))}) GROUP BY session_id",
            open_ids,
        ):
            spent[r["session_id"]] = dict(r)
    out = []
    for s in sessions:
        summary = summarise(s, counts.get(s["id"], {}), spent.get(s["id"]), live.get(s["id"], []))
        if status is None or summary["status"] == status:
            out.append(summary)
    return out[:limit]


_SPENT = (
    "SELECT session_id, count(*) AS calls, coalesce(sum(cost_usd), 0) AS cost_usd,"
    " coalesce(sum(input_tokens), 0) AS input_tokens,"
    " coalesce(sum(output_tokens), 0) AS output_tokens FROM model_calls"
)


def finished_totals(session: Mapping[str, Any]) -> Row | None:
    """A finished session's spending as it recorded it (``sessions.totals``), so listing
    1,000 sessions does not add up 100,000 model calls; None while it runs (or for a store
    whose totals lack a figure), when the calls are summed instead."""
    totals = session.get("totals")
    if session.get("finished_at") is None or not isinstance(totals, dict):
        return None
    keys = ("calls", "cost_usd", "input_tokens", "output_tokens")
    if not all(isinstance(totals.get(k), int | float) for k in keys):
        return None
    return {k: totals[k] for k in keys}


def summarise(
    session: Row, counts: Mapping[str, int], spent: Row | None, pids: Sequence[int]
) -> Row:
    config: Row = session["config"] if isinstance(session.get("config"), dict) else {}
    totals: Row = session["totals"] if isinstance(session.get("totals"), dict) else {}
    spent = spent or {"calls": 0, "cost_usd": 0.0, "input_tokens": 0, "output_tokens": 0}
    nodes = sum(counts.values())
    return {
        "id": session["id"],
        "task": session["task"],
        "status": status_of(session, bool(pids)),
        "pids": list(pids),
        "started_at": session["started_at"],
        "finished_at": session.get("finished_at"),
        "duration_s": duration_s(session["started_at"], session.get("finished_at")),
        "reason": str(totals.get("reason") or ""),
        "nodes": nodes,
        "committed": int(counts.get("committed", 0)),
        "counts": dict(counts),
        "calls": int(spent["calls"]),
        "input_tokens": int(spent["input_tokens"]),
        "output_tokens": int(spent["output_tokens"]),
        "cost_usd": round(float(spent["cost_usd"]), 6),
        "max_cost": config.get("max_cost"),
        "max_steps": config.get("max_steps"),
        "epsilon": config.get("epsilon"),
        "mode": config.get("mode"),
        "models": config.get("models") or {},
        "sandbox": config.get("sandbox") or {},
    }


def duration_s(started: str | None, finished: str | None) -> float | None:
    """Seconds from start to finish (to now while unfinished); None for unreadable times."""
    try:
        start = datetime.fromisoformat(str(started))
        end = datetime.fromisoformat(str(finished)) if finished else datetime.now(start.tzinfo)
    except (TypeError, ValueError):
        return None
    return max(0.0, (end - start).total_seconds())


def session(conn: sqlite3.Connection, reader: Reader, session_id: str) -> Row | None:
    """One session's summary, or None when the store has no such session."""
    found = reader.row(
        conn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
    )
    if found is None:
        return None
    counts = {
        r["state"]: int(r["n"])
        for r in conn.execute(
            "SELECT state, count(*) AS n FROM nodes WHERE session_id = ? GROUP BY state",
            (session_id,),
        )
    }
    pids = [
        int(r["pid"])
        for r in conn.execute(
            "SELECT pid, host, started_at FROM runs WHERE session_id = ? AND ended_at IS NULL",
            (session_id,),
        )
        if reader.alive(int(r["pid"]), str(r["host"]), r["started_at"])
    ]
    spent = (None if pids else finished_totals(found)) or dict(
        conn.execute(f"{_SPENT} WHERE session_id = ?", (session_id,)).fetchone()
    )
    return summarise(found, counts, spent, pids)


# --------------------------------------------------------------------------- pages


def plan_graph(conn: sqlite3.Connection, reader: Reader, session_id: str) -> Row:
    """The latest plan's nodes (id, title, kind, owns, depends_on) with their current state;
    nodes known to the store but not in the plan (a plan from before) are added at the end."""
    plan_row = reader.row(
        conn.execute(
            "SELECT plan FROM plan WHERE session_id = ? ORDER BY id DESC LIMIT 1", (session_id,)
        ).fetchone()
    )
    plan = plan_row["plan"] if plan_row and isinstance(plan_row["plan"], dict) else {}
    stored = {
        r["node_id"]: r
        for r in reader.rows(
            conn.execute(
                "SELECT node_id, title, kind, state, updated_at FROM nodes WHERE session_id = ?"
                " ORDER BY rowid",
                (session_id,),
            )
        )
    }
    attempts: dict[str, int] = {
        r["node_id"]: int(r["n"])
        for r in conn.execute(
            "SELECT node_id, max(attempt) AS n FROM attempts WHERE session_id = ? GROUP BY node_id",
            (session_id,),
        )
    }
    nodes: list[Row] = []
    seen: set[str] = set()
    for item in plan.get("nodes") or []:
        if not isinstance(item, dict) or "id" not in item:
            continue
        nid = str(item["id"])
        seen.add(nid)
        row = stored.get(nid, {})
        nodes.append(
            {
                "id": nid,
                "title": str(item.get("title") or row.get("title") or ""),
                "kind": _kind(item.get("kind")) or str(row.get("kind") or ""),
                "owns": [str(p) for p in _owned(item)],
                "depends_on": [str(d) for d in item.get("depends_on") or []],
                "state": str(row.get("state") or "queued"),
                "attempts": attempts.get(nid, 0),
            }
        )
    for nid, row in stored.items():
        if nid not in seen:
            nodes.append(
                {
                    "id": nid,
                    "title": str(row.get("title") or ""),
                    "kind": str(row.get("kind") or ""),
                    "owns": [],
                    "depends_on": [],
                    "state": str(row["state"]),
                    "attempts": attempts.get(nid, 0),
                }
            )
    return {"nodes": nodes, "goal": str(plan.get("goal") or plan.get("summary") or "")}


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("type") or value.get("kind") or "")
    return "" if value is None else str(value)


def _owned(item: Mapping[str, Any]) -> list[Any]:
    owns = item.get("owns") or item.get("output_targets") or item.get("files") or []
    return list(owns) if isinstance(owns, list) else []


def node_detail(
    conn: sqlite3.Connection, reader: Reader, session_id: str, node_id: str
) -> Row | None:
    """A node's attempts (bundle, energy, evidence), transitions, escalations, approvals."""
    graph = plan_graph(conn, reader, session_id)
    node = next((n for n in graph["nodes"] if n["id"] == node_id), None)
    if node is None:
        return None
    params = (session_id, node_id)
    return {
        "node": node,
        "attempts": reader.rows(
            conn.execute(
                "SELECT * FROM attempts WHERE session_id = ? AND node_id = ? ORDER BY attempt",
                params,
            )
        ),
        "transitions": reader.rows(
            conn.execute(
                "SELECT state, detail, at FROM node_transitions WHERE session_id = ?"
                " AND node_id = ? ORDER BY id",
                params,
            )
        ),
        "escalations": reader.rows(
            conn.execute(
                "SELECT * FROM escalations WHERE session_id = ? AND node_id = ? ORDER BY id",
                params,
            )
        ),
        "approvals": reader.rows(
            conn.execute(
                "SELECT * FROM approvals WHERE session_id = ? AND node_id = ? ORDER BY id", params
            )
        ),
        "calls": int(
            conn.execute(
                "SELECT count(*) FROM model_calls WHERE session_id = ? AND node_id = ?", params
            ).fetchone()[0]
        ),
    }


def energy(conn: sqlite3.Connection, reader: Reader, session_id: str) -> list[Row]:
    """Every attempt's energy components, per node in plan order, then attempt."""
    rows = reader.rows(
        conn.execute(
            "SELECT a.node_id, a.attempt, a.energy, a.stable, a.at FROM attempts a"
            " LEFT JOIN nodes n ON n.session_id = a.session_id AND n.node_id = a.node_id"
            " WHERE a.session_id = ? ORDER BY n.rowid, a.attempt",
            (session_id,),
        )
    )
    out = []
    for r in rows:
        values = r["energy"] if isinstance(r["energy"], dict) else {}
        out.append(
            {
                "node": r["node_id"],
                "attempt": int(r["attempt"]),
                "stable": bool(r["stable"]),
                "at": r["at"],
                **{key: _number(values.get(key)) for key in COMPONENTS},
            }
        )
    return out


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def call_totals(conn: sqlite3.Connection, session_id: str) -> Row:
    row = conn.execute(
        "SELECT count(*) AS requests, coalesce(sum(input_tokens), 0) AS input_tokens,"
        " coalesce(sum(output_tokens), 0) AS output_tokens,"
        " coalesce(sum(cost_usd), 0) AS cost_usd, coalesce(sum(latency_s), 0) AS latency_s,"
        " coalesce(max(latency_s), 0) AS slowest_s, coalesce(sum(ok = 0), 0) AS failed,"
        " coalesce(sum(priced = 0), 0) AS unpriced FROM model_calls WHERE session_id = ?",
        (session_id,),
    ).fetchone()
    return dict(row)


def calls_page(
    conn: sqlite3.Connection,
    reader: Reader,
    session_id: str,
    *,
    page: int,
    tier: str | None = None,
    node: str | None = None,
) -> list[Row]:
    """One page of model calls (oldest first), previews cut to ``PREVIEW_CHARS``."""
    sql = (
        "SELECT id, tier, model, node_id, attempt, schema_name, input_tokens, output_tokens,"
        " cost_usd, priced, latency_s, ok, error, prompt_chars, reply_chars, at,"
        f" substr(prompt, 1, {PREVIEW_CHARS}) AS prompt, substr(response, 1, {PREVIEW_CHARS})"
        " AS response FROM model_calls WHERE session_id = ?"
    )
    params: list[Any] = [session_id]
    if tier:
        sql += " AND tier = ?"
        params.append(tier)
    if node:
        sql += " AND node_id = ?"
        params.append(node)
    sql += " ORDER BY id LIMIT ? OFFSET ?"
    params += [CALLS_PER_PAGE, max(0, page - 1) * CALLS_PER_PAGE]
    return reader.rows(conn.execute(sql, params))


def call_count(
    conn: sqlite3.Connection, session_id: str, tier: str | None, node: str | None
) -> int:
    sql, params = "SELECT count(*) FROM model_calls WHERE session_id = ?", [session_id]
    if tier:
        sql += " AND tier = ?"
        params.append(tier)
    if node:
        sql += " AND node_id = ?"
        params.append(node)
    return int(conn.execute(sql, params).fetchone()[0])


def sandboxes(
    conn: sqlite3.Connection, reader: Reader, session_id: str, workspace: Path
) -> list[Row]:
    """Each attempt's sandbox: ``merged`` (its bundle is the node's commit), ``active`` (the
    node is at work on it now) or ``flushed`` (thrown away), with its directory."""
    states = node_states(conn, session_id)
    committed = {
        r["node_id"]
        for r in conn.execute(
            "SELECT DISTINCT node_id FROM approvals WHERE session_id = ?"
            " AND ledger_sha IS NOT NULL",
            (session_id,),
        )
    }
    rows = energy(conn, reader, session_id)
    latest: dict[str, int] = {}
    for r in rows:
        latest[r["node"]] = max(latest.get(r["node"], 0), r["attempt"])
    root = Path(workspace) / ".keel" / "sandboxes" / session_id
    out = []
    for r in rows:
        nid, last = r["node"], r["attempt"] == latest[r["node"]]
        state = states.get(nid, "")
        if last and state == "committed" and nid in committed:
            kind = "merged"
        elif last and state in ("running", "verifying", "retrying", "awaiting_approval"):
            kind = "active"
        else:
            kind = "flushed"
        directory = root / nid / str(r["attempt"])  # the engine's <node>/<check number>
        out.append(
            {
                "node": nid,
                "attempt": r["attempt"],
                "state": kind,
                "node_state": state,
                "directory": str(directory),
                "exists": directory.is_dir(),
                "v": r["v"],
                "stable": r["stable"],
                "at": r["at"],
            }
        )
    return out


def decisions(conn: sqlite3.Connection, reader: Reader, session_id: str) -> Row:
    """Escalations, sheaf checks, plan revisions, approvals and rejections, verifications."""
    marks = ",".join("?" * len(DECISION_EVENTS))
    events = reader.rows(
        conn.execute(
            f"SELECT id, type, payload, at FROM events WHERE session_id = ? AND type IN ({marks})"
            " ORDER BY id",
            (session_id, *DECISION_EVENTS),
        )
    )
    payloads = [
        (e["type"], e["payload"] if isinstance(e["payload"], dict) else {}, e["at"]) for e in events
    ]
    verifications = [(p, at) for t, p, at in payloads if t == "verification"]
    plans = reader.rows(
        conn.execute(
            "SELECT id, plan, created_at FROM plan WHERE session_id = ? ORDER BY id", (session_id,)
        )
    )
    return {
        "escalations": reader.rows(
            conn.execute(
                "SELECT node_id, report, at FROM escalations WHERE session_id = ? ORDER BY id",
                (session_id,),
            )
        ),
        "sheaf": [p | {"at": at} for p, at in verifications if p.get("node") is None],
        "verifications": [p | {"at": at} for p, at in verifications if p.get("node") is not None],
        "plans": [
            {
                "at": p["created_at"],
                "nodes": len(p["plan"].get("nodes") or []) if isinstance(p["plan"], dict) else 0,
                "ids": [
                    str(n.get("id"))
                    for n in (p["plan"].get("nodes") or [] if isinstance(p["plan"], dict) else [])
                    if isinstance(n, dict)
                ],
            }
            for p in plans
        ],
        "approvals": reader.rows(
            conn.execute(
                "SELECT node_id, decision, actor, ledger_sha, note, bundle_id, files, at"
                " FROM approvals WHERE session_id = ? ORDER BY id",
                (session_id,),
            )
        ),
        "rejections": [
            p | {"type": t, "at": at}
            for t, p, at in payloads
            if t in ("bundle_rejected", "bundle_edited", "ledger_refused")
        ],
        "outcomes": [
            p | {"type": t, "at": at}
            for t, p, at in payloads
            if t in ("plan_failed", "node_failed", "budget_exceeded", "session_finished")
        ],
    }
