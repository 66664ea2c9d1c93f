"""The session store against real SQLite: every record round-trips as a typed record, a
handle scoped to one session sees only that session, the file is WAL and versioned, data
survives a reopen, and a file that is not a store is refused untouched.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keel.engine.events import (
    NodeStarted,
    PlanInvalid,
    PlannedNode,
    PlanReady,
    WarningEvent,
    parse_event,
)
from keel.engine.ports import KeelError, SessionStore
from keel.engine.records import (
    ApprovalRecord,
    AttemptRecord,
    CallTotals,
    EventRecord,
    ModelCall,
    NodeRecord,
    RunRecord,
    SessionRecord,
    hunks_note,
)
from keel.engine.redaction import Redactor
from keel.store import MIGRATIONS, SqliteSessionRecords, SqliteStore, store_path

PLAN = {
    "nodes": [
        {"id": "n1", "title": "write the module", "kind": "code", "owns": ["m.py"]},
        {"id": "n2", "title": "test it", "kind": "unit_test", "depends_on": ["n1"]},
    ]
}
CALL = ModelCall(
    tier="actuator",
    model="gpt-test",
    node_id="n1",
    attempt=1,
    schema_name="artifact_bundle",
    input_tokens=120,
    output_tokens=40,
    cost_usd=0.0012,
    priced=True,
    latency_s=1.5,
    ok=True,
    error=None,
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(tmp_path)
    await opened.session("s1").create_session("build a thing", {"mode": "headless", "epsilon": 0.1})
    yield opened
    await opened.close()


@pytest.fixture
def s1(store: SqliteStore) -> SqliteSessionRecords:
    return store.session("s1")


def sqlite_value(path: Path, sql: str) -> object:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchone()[0]


async def test_open_creates_the_store_in_wal_mode_with_a_version(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path)
    await store.close()
    await store.close()  # idempotent
    path = tmp_path / ".keel" / "keel.db"
    assert store.path == path == store_path(tmp_path)
    assert sqlite_value(path, "PRAGMA journal_mode") == "wal"
    assert sqlite_value(path, "PRAGMA user_version") == len(MIGRATIONS)


async def test_open_accepts_the_database_file_itself(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "elsewhere" / "my.db")
    await store.close()
    assert (tmp_path / "elsewhere" / "my.db").is_file()


async def test_session_round_trip(store: SqliteStore, s1: SqliteSessionRecords) -> None:
    session = await s1.record()
    assert isinstance(session, SessionRecord)
    assert session.id == s1.session_id == "s1"
    assert session.task == "build a thing"
    assert session.config == {"mode": "headless", "epsilon": 0.1}
    assert session.started_at and session.finished_at is None and session.reason == ""

    totals = {"input_tokens": 10, "output_tokens": 5, "cost_usd": 0.01, "reason": "why"}
    await s1.finish_session("success", totals)
    session = await s1.record()
    assert session is not None
    assert (session.outcome, session.totals, session.reason) == ("success", totals, "why")
    assert session.finished_at
    assert await store.session("nope").record() is None


async def test_records_are_frozen(s1: SqliteSessionRecords) -> None:
    session = await s1.record()
    assert session is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        session.task = "something else"  # type: ignore[misc]


async def test_plan_and_node_lifecycle(s1: SqliteSessionRecords) -> None:
    await s1.record_plan(PLAN)
    plan = await s1.plan()
    assert plan is not None and plan.plan == PLAN
    nodes = await s1.nodes()
    assert all(isinstance(n, NodeRecord) and n.updated_at for n in nodes)
    assert [(n.node_id, n.title, n.kind, n.state) for n in nodes] == [
        ("n1", "write the module", "code", "queued"),
        ("n2", "test it", "unit_test", "queued"),
    ]

    await s1.set_node_state("n1", "running")
    await s1.set_node_state("n1", "committed", "abc123")
    nodes = {n.node_id: n for n in await s1.nodes()}
    assert nodes["n1"].state == "committed"
    assert nodes["n2"].state == "queued"
    transitions = await s1.transitions()
    assert [(t.node_id, t.state, t.detail) for t in transitions] == [
        ("n1", "running", ""),
        ("n1", "committed", "abc123"),
    ]

    await s1.record_plan(PLAN)  # a re-plan keeps known nodes' states
    nodes = {n.node_id: n for n in await s1.nodes()}
    assert nodes["n1"].state == "committed"


async def test_attempts_round_trip(s1: SqliteSessionRecords) -> None:
    bundle = {"writes": [{"path": "m.py", "content": "x = 1\n"}], "diffs": [], "deletes": []}
    energy = {"v_syn": 1.0, "v_str": 0.0, "v_log": 2.0, "v_boot": 0.0, "v_sheaf": 0.0, "v": 3.0}
    evidence = [{"component": "log", "message": "test_x failed", "source": "pytest"}]
    await s1.record_attempt(AttemptRecord("n1", 1, bundle, energy, evidence, False))
    await s1.record_attempt(AttemptRecord("n1", 2, None, {"v": 0.0}, [], True))
    await s1.record_attempt(AttemptRecord("n2", 1, None, {"v": 0.0}, [], True))

    attempts = await s1.attempts("n1")
    assert all(isinstance(a, AttemptRecord) for a in attempts)
    assert [(a.attempt, a.stable) for a in attempts] == [(1, False), (2, True)]
    first = attempts[0]
    assert (first.bundle, first.energy, first.evidence) == (bundle, energy, evidence)
    assert first.at and attempts[1].bundle is None
    assert len(await s1.attempts()) == 3
    # recording the same attempt again (a resume) replaces it
    await s1.record_attempt(AttemptRecord("n1", 2, None, {"v": 0.5}, [], False))
    assert [(a.attempt, a.stable) for a in await s1.attempts("n1")] == [(1, False), (2, False)]


async def test_model_calls_round_trip(s1: SqliteSessionRecords) -> None:
    await s1.record_model_call(CALL)
    logged = dataclasses.replace(CALL, ok=False, error="timeout", prompt="p", response="r")
    await s1.record_model_call(logged)
    calls = await s1.model_calls()
    assert len(calls) == 2
    for got, want in zip(calls, [CALL, logged], strict=True):
        assert got.id is not None and got.at
        assert dataclasses.replace(got, id=None, at="") == want
    assert calls[0].prompt is None and calls[0].response is None


async def test_approvals_escalations_and_events(s1: SqliteSessionRecords) -> None:
    await s1.record_approval("n1", "approved", "user", "f" * 40)
    await s1.record_approval("n2", "rejected", "user", None, "wrong approach")
    approvals = await s1.approvals()
    assert all(isinstance(a, ApprovalRecord) for a in approvals)
    assert [(a.decision, a.ledger_sha, a.note) for a in approvals] == [
        ("approved", "f" * 40, ""),
        ("rejected", None, "wrong approach"),
    ]

    report = {"node": "n2", "attempts": 3, "energy": {"v": 2.0}, "evidence": ["failing"]}
    await s1.record_escalation("n2", report)
    assert [e.report for e in await s1.escalations()] == [report]

    event = PlanReady(nodes=[PlannedNode("n1", "first", "code", ["a.py"], [])])
    stamped = event.stamped("2026-01-01T00:00:00+00:00", "s1")
    await s1.record_event(stamped)
    await s1.record_event(NodeStarted(node="n1", title="first", kind="code"))
    events = await s1.events()
    assert [e.type for e in events] == ["plan_ready", "node_started"]
    assert events[0].payload == {
        "ts": "2026-01-01T00:00:00+00:00",
        "session": "s1",
        "type": "plan_ready",
        "nodes": [
            {"id": "n1", "title": "first", "kind": "code", "owns": ["a.py"], "depends_on": []}
        ],
    }
    assert events[0].at == stamped.ts
    assert parse_event(events[0].payload) == stamped


async def test_a_scoped_handle_sees_only_its_session(store: SqliteStore) -> None:
    """Two sessions' records never mix: every read and write of a handle is its session's."""
    s1, s2 = store.session("s1"), store.session("s2")
    await s2.create_session("second", {})
    await s1.record_plan(PLAN)
    await s2.record_plan({"nodes": [{"id": "n1", "title": "other", "kind": "code"}]})
    await s2.set_node_state("n1", "failed", "no")
    await s1.record_model_call(CALL)
    await s1.record_event(WarningEvent(message="only-s1"))
    await s2.record_approval("n1", "approved", "user", None, bundle="b1")
    run = await s2.begin_run(123, "host")
    await s2.request_abort()
    assert await s1.node_states() == {"n1": "queued", "n2": "queued"}
    assert await s2.node_states() == {"n1": "failed"}
    assert (await s1.call_totals()).calls == 1 and (await s2.call_totals()).calls == 0
    assert [e.type for e in await s2.events()] == []
    assert await s1.pending_approval("n1", "b1") is None
    assert await s2.pending_approval("n1", "b1") is not None
    assert not await s1.abort_requested() and await s2.abort_requested()
    await s1.end_run(run)  # another session's run id ends nothing
    assert [r.id for r in await s2.live_runs()] == [run]
    await s2.end_run(run)
    assert await s2.live_runs() == []


async def test_events_after_resumes_after_an_id_in_pages(store: SqliteStore) -> None:
    """The API's stream resumes from a Last-Event-ID: exactly the later events, in order,
    a page at a time, and never another session's."""
    s1, s2 = store.session("s1"), store.session("s2")
    await s2.create_session("second", {})
    for n in range(5):
        await s1.record_event(WarningEvent(message=f"s1-{n}"))
        await s2.record_event(WarningEvent(message=f"s2-{n}"))
    every = await s1.events_after()
    assert all(isinstance(e, EventRecord) for e in every)
    assert [e.payload["message"] for e in every] == [f"s1-{n}" for n in range(5)]
    assert [e.id for e in every] == sorted(e.id for e in every)
    later = await s1.events_after(every[1].id, limit=2)
    assert [e.id for e in later] == [every[2].id, every[3].id]
    assert await s1.events_after(every[-1].id) == []
    assert [e.payload["message"] for e in await s2.events_after(every[2].id)][:1] == ["s2-2"]
    assert await store.session("nobody").events_after() == []


async def test_runs_lists_ended_and_live_runs_oldest_first(s1: SqliteSessionRecords) -> None:
    first = await s1.begin_run(11, "here")
    await s1.end_run(first)
    second = await s1.begin_run(12, "there")
    runs = await s1.runs()
    assert all(isinstance(r, RunRecord) for r in runs)
    assert [(r.id, r.pid, r.host) for r in runs] == [(first, 11, "here"), (second, 12, "there")]
    assert runs[0].ended_at is not None and runs[1].ended_at is None
    assert [r.id for r in await s1.live_runs()] == [second]


async def test_the_sqlite_store_implements_the_port(store: SqliteStore) -> None:
    port: SessionStore = store  # checked by mypy; the handle is the engine's SessionRecords
    assert port.session("s1").session_id == "s1"


async def test_sessions_listing(store: SqliteStore) -> None:
    await store.session("s2").create_session("second", {})
    assert [s.id for s in await store.sessions()] == ["s2", "s1"]
    assert [s.id for s in await store.sessions(limit=1)] == ["s2"]
    assert await store.latest_session_id() == "s2"


async def test_empty_store_has_no_latest_session(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path)
    try:
        assert await store.latest_session_id() is None
        assert await store.sessions() == []
    finally:
        await store.close()


async def test_reopen_keeps_data(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path)
    await store.session("s1").create_session("task", {"a": 1})
    await store.session("s1").record_plan(PLAN)
    await store.close()

    reopened = await SqliteStore.open(tmp_path)
    try:
        assert await reopened.latest_session_id() == "s1"
        assert len(await reopened.session("s1").nodes()) == 2
    finally:
        await reopened.close()
    assert sqlite_value(store_path(tmp_path), "PRAGMA user_version") == len(MIGRATIONS)


async def test_write_for_unknown_session_is_a_keel_error(
    store: SqliteStore, s1: SqliteSessionRecords
) -> None:
    with pytest.raises(KeelError, match="session store"):
        await store.session("missing").record_event(WarningEvent(message="x"))
    await s1.record_event(WarningEvent(message="still works"))
    assert len(await s1.events()) == 1


async def test_corrupt_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = store_path(tmp_path)
    path.parent.mkdir()
    garbage = os.urandom(4096)
    path.write_bytes(garbage)
    with pytest.raises(KeelError, match="is not a valid Keel store") as caught:
        await SqliteStore.open(tmp_path)
    assert "left untouched" in str(caught.value)
    assert path.read_bytes() == garbage
    assert sorted(p.name for p in path.parent.iterdir()) == ["keel.db"]


async def test_truncated_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path)
    await store.session("s1").create_session("task", {})
    await store.close()
    path = store_path(tmp_path)
    truncated = path.read_bytes()[:2000]
    path.write_bytes(truncated)
    for leftover in path.parent.glob("keel.db-*"):
        leftover.unlink()
    with pytest.raises(KeelError, match="is not a valid Keel store"):
        await SqliteStore.open(tmp_path)
    assert path.read_bytes() == truncated


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path)
    await store.close()
    with sqlite3.connect(store_path(tmp_path)) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(KeelError, match="newer"):
        await SqliteStore.open(tmp_path)


# ----------------------------------------------------------------- redaction, intents, upgrade

SECRET = "s3cret-value-of-a-deploy-token"


async def test_every_record_is_redacted_before_it_is_written(tmp_path: Path) -> None:
    """Content columns are scrubbed at write time; ids stay as they are, so lookups work."""
    store = await SqliteStore.open(tmp_path, Redactor({"DEPLOY_TOKEN": SECRET}))
    leak = f"token {SECRET} and sk-proj-ABCDEFGH12345678"
    try:
        s1 = store.session("s1")
        await s1.create_session(f"task {SECRET}", {"note": leak})
        await s1.record_plan({"nodes": [{"id": "n1", "title": leak, "kind": "code"}]})
        await s1.set_node_state("n1", "running", leak)
        await s1.record_attempt(
            AttemptRecord("n1", 1, {"writes": [leak]}, {"v": 1.0}, [{"m": leak}], False)
        )
        await s1.record_model_call(
            dataclasses.replace(CALL, error=leak, prompt=leak, response=leak)
        )
        await s1.record_approval("n1", "rejected", "user", None, leak)
        await s1.record_escalation("n1", {"reason": leak})
        await s1.record_event(PlanInvalid(attempt=1, errors=[leak]))
        await s1.begin_step("model:actuator:n1:1", "model", {"d": leak})
        await s1.finish_step("model:actuator:n1:1", {"text": leak}, CALL)
        await s1.finish_session("failed", {"reason": leak})
        assert await s1.step_result("model:actuator:n1:1") == {
            "text": "token [redacted] and [redacted]"
        }
    finally:
        await store.close()
    dump = "\n".join(sqlite3.connect(store_path(tmp_path)).iterdump())
    assert SECRET not in dump and "sk-proj-ABCDEFGH12345678" not in dump
    assert dump.count("[redacted]") >= 24


async def test_words_that_merely_contain_sk_are_not_redacted(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path)
    try:
        await store.session("s1").create_session("risk-assessment of task-runner", {})
        session = await store.session("s1").record()
    finally:
        await store.close()
    assert session is not None and session.task == "risk-assessment of task-runner"


async def test_an_approval_is_an_intent_until_its_commit_confirms_it(
    s1: SqliteSessionRecords,
) -> None:
    await s1.record_approval("n1", "approved", "user", None, bundle="b1", files=["a.py"])
    pending = await s1.pending_approval("n1", "b1")
    assert pending is not None and pending.actor == "user" and pending.files == ["a.py"]
    assert pending.bundle_id == "b1" and pending.ledger_sha is None
    assert await s1.pending_approval("n1", "other-bundle") is None
    confirmed = await s1.confirm_approval("n1", "a" * 40, "user")
    assert (confirmed.ledger_sha, confirmed.files, confirmed.partial) == ("a" * 40, ["a.py"], True)
    assert await s1.pending_approval("n1", "b1") is None
    # a commit the store never heard of (an older store): the approval row is added
    added = await s1.confirm_approval("n2", "b" * 40, "balanced")
    assert (added.node_id, added.ledger_sha, added.partial) == ("n2", "b" * 40, False)
    # confirming a commit again (a resume after a kill) adds nothing and returns the same
    assert await s1.confirm_approval("n1", "a" * 40, "user") == confirmed
    rows = [(a.node_id, a.decision, a.actor, a.ledger_sha) for a in await s1.approvals()]
    assert rows == [("n1", "approved", "user", "a" * 40), ("n2", "approved", "balanced", "b" * 40)]


async def test_an_approval_of_some_hunks_is_partial(s1: SqliteSessionRecords) -> None:
    await s1.record_approval("n1", "approved", "user", None, hunks_note(["h1", "h2"]), bundle="b")
    pending = await s1.pending_approval("n1", "b")
    assert pending is not None and pending.hunks == ["h1", "h2"] and pending.partial
    await s1.record_approval("n2", "approved", "user", None, "approved with -y", bundle="c")
    whole = await s1.pending_approval("n2", "c")
    assert whole is not None and whole.hunks is None and not whole.partial


async def test_a_refused_commit_closes_the_intent(s1: SqliteSessionRecords) -> None:
    await s1.record_approval("n1", "approved", "user", None, bundle="b1")
    await s1.record_approval("n1", "refused", "ledger", None, "a.py changed", bundle="b1")
    assert await s1.pending_approval("n1", "b1") is None


async def test_session_config_keys_can_be_updated(s1: SqliteSessionRecords) -> None:
    await s1.update_session_config({"max_cost": 2.5, "max_steps": None})
    session = await s1.record()
    assert session is not None
    assert session.config == {
        "mode": "headless",
        "epsilon": 0.1,
        "max_cost": 2.5,
        "max_steps": None,
    }


async def test_node_states_and_unpriced_totals(s1: SqliteSessionRecords) -> None:
    assert await s1.call_totals() == CallTotals()
    await s1.record_plan(PLAN)
    await s1.set_node_state("n1", "running")
    assert await s1.node_states() == {"n1": "running", "n2": "queued"}
    await s1.record_model_call(CALL)
    await s1.record_model_call(dataclasses.replace(CALL, priced=False, cost_usd=0.0))
    totals = await s1.call_totals()
    assert (totals.calls, totals.unpriced, totals.input_tokens) == (2, 1, 240)
    assert totals.cost_usd == totals.largest_call_usd == pytest.approx(0.0012)


async def test_a_version_2_store_is_upgraded_in_place(tmp_path: Path) -> None:
    """Rows written before sizes and approval intents keep their values; the new columns are
    NULL there (unknown), not made up."""
    path = store_path(tmp_path)
    path.parent.mkdir()
    with sqlite3.connect(path) as conn:
        conn.executescript(MIGRATIONS[0] + MIGRATIONS[1] + "PRAGMA user_version = 2;")
        conn.execute(
            "INSERT INTO sessions (id, task, config, started_at) VALUES ('s1', 't', '{}', 'x')"
        )
        conn.execute(
            "INSERT INTO model_calls (session_id, tier, model, ok, at)"
            " VALUES ('s1', 'actuator', 'm', 1, 'x')"
        )
    store = await SqliteStore.open(tmp_path)
    try:
        s1 = store.session("s1")
        [call] = await s1.model_calls()
        assert call.prompt_chars is None and call.reply_chars is None
        await s1.record_model_call(dataclasses.replace(CALL, prompt_chars=10, reply_chars=4))
        assert (await s1.model_calls())[1].prompt_chars == 10
    finally:
        await store.close()
    assert sqlite_value(path, "PRAGMA user_version") == len(MIGRATIONS) == 5


async def test_baselines_are_kept_per_commit_and_environment_and_redacted(tmp_path: Path) -> None:
    secret = "sk-baseline-secret-0123456789"
    store = await SqliteStore.open(tmp_path, Redactor({"OPENAI_API_KEY": secret}))
    try:
        record = {"tests": [{"message": f"leaked {secret}"}], "tested": True}
        await store.record_baseline("abc", "env-1", record)
        assert await store.baseline("abc", "env-2") is None
        assert await store.baseline("def", "env-1") is None
        stored = await store.baseline("abc", "env-1")
        assert stored is not None and stored["tested"] is True
        assert secret not in str(stored) and "leaked" in stored["tests"][0]["message"]
        await store.record_baseline("abc", "env-1", {"tested": False})  # replaced, not added
        assert await store.baseline("abc", "env-1") == {"tested": False}
    finally:
        await store.close()


async def test_an_unreadable_baseline_is_absent_not_an_error(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path)
    try:
        await store.record_baseline("abc", "env", {"tested": True})
    finally:
        await store.close()
    with sqlite3.connect(store_path(tmp_path)) as conn:
        conn.execute("UPDATE baselines SET record = '{not json'")
        conn.execute("INSERT INTO baselines VALUES ('def', 'env', '[1, 2]', 'now')")
    store = await SqliteStore.open(tmp_path)
    try:
        assert await store.baseline("abc", "env") is None
        assert await store.baseline("def", "env") is None
    finally:
        await store.close()


async def test_a_damaged_json_column_is_a_clear_error_and_nothing_is_lost(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path)
    s1 = store.session("s1")
    try:
        await s1.create_session("task", {})
        await s1.record_event(WarningEvent(message="kept"))
        await s1.record_event(NodeStarted(node="n1", title="damaged", kind="code"))
    finally:
        await store.close()
    with sqlite3.connect(store_path(tmp_path)) as conn:
        conn.execute("UPDATE events SET payload = '{not json' WHERE type = 'node_started'")
    store = await SqliteStore.open(tmp_path)
    try:
        with pytest.raises(KeelError, match=r"not valid JSON.*left untouched"):
            await store.session("s1").events()
        assert (await store.session("s1").record()) is not None  # other reads still work
    finally:
        await store.close()
    assert sqlite_value(store_path(tmp_path), "SELECT count(*) FROM events") == 2


@pytest.mark.parametrize("session_id", ['it\'s "odd"; DROP TABLE sessions; --', "sé ssion/1"])
async def test_any_session_id_is_kept_as_it_is(tmp_path: Path, session_id: str) -> None:
    store = await SqliteStore.open(tmp_path)
    try:
        records = store.session(session_id)
        await records.create_session("task", {"mode": "yolo"})
        await records.set_node_state("n1", "running")
        session = await records.record()
        assert session is not None and session.id == session_id
        assert await records.node_states() == {"n1": "running"}
        assert await store.latest_session_id() == session_id
    finally:
        await store.close()
