"""What the store promises a resumed session: a write that returned survives the process being
killed at any moment (``synchronous=NORMAL`` in WAL mode: a commit is in the WAL before the
call returns, synced at checkpoints), and a transaction is all or nothing, also under a kill.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from keel.engine.events import WarningEvent
from keel.engine.ports import KeelError
from keel.store import SqliteStore, store_path

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from keel.store import SqliteStore

    async def main():
        store = await SqliteStore.open(sys.argv[1])
        records = store.session("s1")
        await records.create_session("task", {})
        i = 0
        while True:
            # two statements in one transaction: the node's row and its transition
            await records.set_node_state("n1", f"s{i}", "x" * 2000)
            print(i, flush=True)
            i += 1

    asyncio.run(main())
    """
)


async def test_the_store_commits_to_the_wal_and_syncs_at_checkpoints(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path)
    try:
        mode = await store._query("PRAGMA journal_mode", ())
        sync = await store._query("PRAGMA synchronous", ())
    finally:
        await store.close()
    assert (mode[0]["journal_mode"], sync[0]["synchronous"]) == ("wal", 1)  # 1: NORMAL


def test_a_kill_loses_no_returned_write_and_tears_no_transaction(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    acknowledged = -1
    try:
        while acknowledged < 60:
            line = proc.stdout.readline()
            assert line, "the writer stopped before it was killed"
            acknowledged = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)  # mid-write, most likely: it never pauses
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with sqlite3.connect(store_path(tmp_path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        states = [row[0] for row in conn.execute("SELECT state FROM node_transitions ORDER BY id")]
        current = conn.execute("SELECT state FROM nodes WHERE node_id = 'n1'").fetchone()[0]
    # every write that returned is there, in order, with nothing missing between them
    assert len(states) > acknowledged
    assert states == [f"s{i}" for i in range(len(states))]
    # the node's row and its transition were written together or not at all
    assert current == states[-1]


async def test_a_failing_statement_undoes_its_whole_transaction(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path)
    try:
        s1 = store.session("s1")
        await s1.create_session("task", {})
        event = (
            "INSERT INTO events (session_id, type, payload, at) VALUES (?, ?, ?, ?)",
            ("s1", "warning", "{}", "now"),
        )
        broken = ("INSERT INTO no_such_table VALUES (?)", (1,))
        with pytest.raises(KeelError, match="cannot write to the session store"):
            await store._write([event, broken])
        assert await s1.events() == []
        await s1.record_event(WarningEvent(message="the next write works"))
        assert [e.payload["message"] for e in await s1.events()] == ["the next write works"]
    finally:
        await store.close()
