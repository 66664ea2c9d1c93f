"""The session store against real SQLite: every record round-trips, the file is WAL and
versioned, data survives a reopen, and a file that is not a store is refused untouched.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from keel.engine.ports import KeelError
from keel.engine.redaction import Redactor
from keel.store import MIGRATIONS, SqliteStore, store_path

PLAN = {
    "nodes": [
        {"id": "n1", "title": "write the module", "kind": "code", "owns": ["m.py"]},
        {"id": "n2", "title": "test it", "kind": "unit_test", "depends_on": ["n1"]},
    ]
}
CALL = {
    "tier": "actuator",
    "model": "gpt-test",
    "node_id": "n1",
    "attempt": 1,
    "schema_name": "artifact_bundle",
    "input_tokens": 120,
    "output_tokens": 40,
    "cost_usd": 0.0012,
    "priced": True,
    "latency_s": 1.5,
    "ok": True,
    "error": None,
}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(tmp_path)
    await opened.create_session("s1", "build a thing", {"mode": "headless", "epsilon": 0.1})
    yield opened
    await opened.close()


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


async def test_session_round_trip(store: SqliteStore) -> None:
    session = await store.session("s1")
    assert session is not None
    assert session["task"] == "build a thing"
    assert session["config"] == {"mode": "headless", "epsilon": 0.1}
    assert session["started_at"] and session["finished_at"] is None

    totals = {"input_tokens": 10, "output_tokens": 5, "cost_usd": 0.01, "wall_s": 3.2}
    await store.finish_session("s1", "success", totals)
    session = await store.session("s1")
    assert session is not None
    assert (session["outcome"], session["totals"]) == ("success", totals)
    assert session["finished_at"]
    assert await store.session("nope") is None


async def test_plan_and_node_lifecycle(store: SqliteStore) -> None:
    await store.record_plan("s1", PLAN)
    plan = await store.plan("s1")
    assert plan is not None and plan["plan"] == PLAN
    nodes = await store.nodes("s1")
    assert [(n["node_id"], n["title"], n["kind"], n["state"]) for n in nodes] == [
        ("n1", "write the module", "code", "queued"),
        ("n2", "test it", "unit_test", "queued"),
    ]

    await store.set_node_state("s1", "n1", "running")
    await store.set_node_state("s1", "n1", "committed", "abc123")
    nodes = {n["node_id"]: n for n in await store.nodes("s1")}
    assert nodes["n1"]["state"] == "committed"
    assert nodes["n2"]["state"] == "queued"
    transitions = await store.transitions("s1")
    assert [(t["node_id"], t["state"], t["detail"]) for t in transitions] == [
        ("n1", "running", ""),
        ("n1", "committed", "abc123"),
    ]

    await store.record_plan("s1", PLAN)  # a re-plan keeps known nodes' states
    nodes = {n["node_id"]: n for n in await store.nodes("s1")}
    assert nodes["n1"]["state"] == "committed"


async def test_attempts_round_trip(store: SqliteStore) -> None:
    bundle = {"writes": [{"path": "m.py", "content": "x = 1\n"}], "diffs": [], "deletes": []}
    energy = {"v_syn": 1.0, "v_str": 0.0, "v_log": 2.0, "v_boot": 0.0, "v_sheaf": 0.0, "v": 3.0}
    evidence = [{"component": "log", "message": "test_x failed", "source": "pytest"}]
    await store.record_attempt("s1", "n1", 1, bundle, energy, evidence, False)
    await store.record_attempt("s1", "n1", 2, None, {"v": 0.0}, [], True)
    await store.record_attempt("s1", "n2", 1, None, {"v": 0.0}, [], True)

    attempts = await store.attempts("s1", "n1")
    assert [(a["attempt"], a["stable"]) for a in attempts] == [(1, False), (2, True)]
    first = attempts[0]
    assert (first["bundle"], first["energy"], first["evidence"]) == (bundle, energy, evidence)
    assert attempts[1]["bundle"] is None
    assert len(await store.attempts("s1")) == 3


async def test_model_calls_round_trip(store: SqliteStore) -> None:
    await store.record_model_call("s1", CALL)
    logged = {**CALL, "ok": False, "error": "timeout", "prompt": "p", "response": "r"}
    await store.record_model_call("s1", logged)
    calls = await store.model_calls("s1")
    assert len(calls) == 2
    for got, want in zip(calls, [CALL, logged], strict=True):
        assert {key: got[key] for key in want} == want
    assert calls[0]["prompt"] is None and calls[0]["response"] is None


async def test_approvals_escalations_and_events(store: SqliteStore) -> None:
    await store.record_approval("s1", "n1", "approved", "user", "f" * 40)
    await store.record_approval("s1", "n2", "rejected", "user", None, "wrong approach")
    approvals = await store.approvals("s1")
    assert [(a["decision"], a["ledger_sha"], a["note"]) for a in approvals] == [
        ("approved", "f" * 40, ""),
        ("rejected", None, "wrong approach"),
    ]

    report = {"node": "n2", "attempts": 3, "energy": {"v": 2.0}, "evidence": ["failing"]}
    await store.record_escalation("s1", "n2", report)
    assert [e["report"] for e in await store.escalations("s1")] == [report]

    event = {"ts": "2026-01-01T00:00:00+00:00", "session": "s1", "type": "plan_ready", "nodes": 2}
    await store.record_event("s1", event)
    await store.record_event("s1", {"type": "node_started", "node": "n1"})
    events = await store.events("s1")
    assert [e["type"] for e in events] == ["plan_ready", "node_started"]
    assert events[0]["payload"] == event
    assert events[0]["at"] == event["ts"]


async def test_sessions_listing(store: SqliteStore) -> None:
    await store.create_session("s2", "second", {})
    assert [s["id"] for s in await store.sessions()] == ["s2", "s1"]
    assert [s["id"] for s in await store.sessions(limit=1)] == ["s2"]
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
    await store.create_session("s1", "task", {"a": 1})
    await store.record_plan("s1", PLAN)
    await store.close()

    reopened = await SqliteStore.open(tmp_path)
    try:
        assert await reopened.latest_session_id() == "s1"
        assert len(await reopened.nodes("s1")) == 2
    finally:
        await reopened.close()
    assert sqlite_value(store_path(tmp_path), "PRAGMA user_version") == len(MIGRATIONS)


async def test_write_for_unknown_session_is_a_keel_error(store: SqliteStore) -> None:
    with pytest.raises(KeelError, match="session store"):
        await store.record_event("missing", {"type": "x"})
    await store.record_event("s1", {"type": "still works"})
    assert len(await store.events("s1")) == 1


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
    await store.create_session("s1", "task", {})
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
        await store.create_session("s1", f"task {SECRET}", {"note": leak})
        await store.record_plan("s1", {"nodes": [{"id": "n1", "title": leak, "kind": "code"}]})
        await store.set_node_state("s1", "n1", "running", leak)
        await store.record_attempt(
            "s1", "n1", 1, {"writes": [leak]}, {"v": 1.0}, [{"m": leak}], False
        )
        await store.record_model_call(
            "s1", {**CALL, "error": leak, "prompt": leak, "response": leak}
        )
        await store.record_approval("s1", "n1", "rejected", "user", None, leak)
        await store.record_escalation("s1", "n1", {"reason": leak})
        await store.record_event("s1", {"type": "x", "nested": {"list": [leak]}})
        await store.begin_step("s1", "model:actuator:n1:1", "model", {"d": leak})
        await store.finish_step("s1", "model:actuator:n1:1", {"text": leak}, CALL)
        await store.finish_session("s1", "failed", {"reason": leak})
        assert await store.step_result("s1", "model:actuator:n1:1") == {
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
        await store.create_session("s1", "risk-assessment of task-runner", {})
        session = await store.session("s1")
    finally:
        await store.close()
    assert session is not None and session["task"] == "risk-assessment of task-runner"


async def test_an_approval_is_an_intent_until_its_commit_confirms_it(store: SqliteStore) -> None:
    await store.record_approval("s1", "n1", "approved", "user", None, bundle="b1", files=["a.py"])
    pending = await store.pending_approval("s1", "n1", "b1")
    assert pending is not None and pending["actor"] == "user" and pending["files"] == ["a.py"]
    assert await store.pending_approval("s1", "n1", "other-bundle") is None
    await store.confirm_approval("s1", "n1", "a" * 40, "user")
    assert await store.pending_approval("s1", "n1", "b1") is None
    # a commit the store never heard of (an older store): the approval row is added
    await store.confirm_approval("s1", "n2", "b" * 40, "balanced")
    rows = [
        (a["node_id"], a["decision"], a["actor"], a["ledger_sha"])
        for a in await store.approvals("s1")
    ]
    assert rows == [("n1", "approved", "user", "a" * 40), ("n2", "approved", "balanced", "b" * 40)]


async def test_a_refused_commit_closes_the_intent(store: SqliteStore) -> None:
    await store.record_approval("s1", "n1", "approved", "user", None, bundle="b1")
    await store.record_approval("s1", "n1", "refused", "ledger", None, "a.py changed", bundle="b1")
    assert await store.pending_approval("s1", "n1", "b1") is None


async def test_session_config_keys_can_be_updated(store: SqliteStore) -> None:
    await store.update_session_config("s1", {"max_cost": 2.5, "max_steps": None})
    session = await store.session("s1")
    assert session is not None
    assert session["config"] == {
        "mode": "headless",
        "epsilon": 0.1,
        "max_cost": 2.5,
        "max_steps": None,
    }


async def test_node_states_and_unpriced_totals(store: SqliteStore) -> None:
    await store.record_plan("s1", PLAN)
    await store.set_node_state("s1", "n1", "running")
    assert await store.node_states("s1") == {"n1": "running", "n2": "queued"}
    await store.record_model_call("s1", CALL)
    await store.record_model_call("s1", {**CALL, "priced": False, "cost_usd": 0.0})
    totals = await store.call_totals("s1")
    assert totals["calls"] == 2 and totals["unpriced"] == 1


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
        [call] = await store.model_calls("s1")
        assert call["prompt_chars"] is None and call["reply_chars"] is None
        await store.record_model_call("s1", {**CALL, "prompt_chars": 10, "reply_chars": 4})
        assert (await store.model_calls("s1"))[1]["prompt_chars"] == 10
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
