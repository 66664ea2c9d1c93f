"""The API's event feed: every stored event once, in order, from any resume point."""

from __future__ import annotations

import asyncio
import json

from keel.api.feed import BATCH, Feed
from keel.engine.records import EventRecord, RunRecord


class Rows:
    """An in-memory ``events`` table of one session, read as the store's records."""

    def __init__(self) -> None:
        self.rows: list[EventRecord] = []
        self.alive = True
        self.reads = 0

    def add(self, kind: str) -> int:
        row_id = len(self.rows) + 1
        payload = {"ts": "2026-12-05T00:00:00Z", "type": kind, "n": row_id}
        self.rows.append(EventRecord(row_id, kind, payload, "2026-12-05T00:00:00Z"))
        return row_id

    async def read(self, after: int, limit: int) -> list[EventRecord]:
        self.reads += 1
        return [r for r in self.rows if r.id > after][:limit]

    async def is_alive(self) -> bool:
        return self.alive


async def test_a_client_gets_every_event_once_from_its_resume_point() -> None:
    rows = Rows()
    feed = Feed(rows.read, rows.is_alive, poll_s=60)
    for kind in ("session_started", "plan_ready", "node_started"):
        rows.add(kind)
    await feed.refresh()
    index = feed.start_index(1)  # Last-Event-ID: 1
    batch = await feed.next_batch(index, 0.01)
    assert batch is not None and [e.id for e in batch] == [2, 3]
    # the SSE data is exactly the stored --json object
    assert [json.loads(e.data) for e in batch] == [dict(r.payload) for r in rows.rows[1:3]]
    index += len(batch)
    assert await feed.next_batch(index, 0.01) == []  # nothing new: keep-alive, not the end

    waiting = asyncio.create_task(feed.next_batch(index, 30))
    rows.add("session_finished")
    await feed.refresh()
    batch = await waiting
    assert batch is not None and [(e.id, e.type) for e in batch] == [(4, "session_finished")]
    assert feed.done
    assert await feed.next_batch(index + 1, 30) is None  # done and all taken: the end
    assert feed.start_index(4) == 4 and feed.start_index(0) == 0


async def test_two_reads_at_once_never_give_an_event_twice() -> None:
    """A watcher cancelled as its last client left can still be finishing a read when the
    next client's watcher reads: the feed keeps every event once."""
    rows = Rows()
    rows.add("session_started")
    rows.add("plan_ready")
    release, began = asyncio.Event(), asyncio.Event()
    entered: list[int] = []

    async def slow_read(after: int, limit: int) -> list[EventRecord]:
        found = await rows.read(after, limit)
        entered.append(after)
        began.set()
        await release.wait()
        return found

    slow = Feed(slow_read, rows.is_alive, poll_s=60)
    first = asyncio.create_task(slow.refresh())
    second = asyncio.create_task(slow.refresh())
    await began.wait()  # the first read is in
    release.set()
    await asyncio.gather(first, second)
    batch = await slow.next_batch(0, 0.01)
    assert batch is not None and [e.id for e in batch] == [1, 2]
    assert entered == [0, 2]  # the second read began after the first was in


async def test_a_stopped_session_without_a_finish_ends_once_everything_is_read() -> None:
    rows = Rows()
    feed = Feed(rows.read, rows.is_alive, poll_s=60)
    rows.add("session_started")
    await feed.refresh()
    assert not feed.done
    rows.alive = False  # the server was killed: no run, no session_finished
    await feed.refresh()
    assert feed.done
    feed.reopen()  # resumed: live again
    assert not feed.done


async def test_catching_up_reads_in_batches_without_losing_rows() -> None:
    rows = Rows()
    for _ in range(BATCH * 2 + 3):
        rows.add("verification")
    feed = Feed(rows.read, rows.is_alive, poll_s=60)
    await feed.refresh()
    batch = await feed.next_batch(0, 0.01)
    assert batch is not None and [e.id for e in batch] == list(range(1, BATCH * 2 + 4))
    assert rows.reads == 3


async def test_a_poke_wakes_the_watcher_without_waiting_for_the_poll() -> None:
    rows = Rows()
    feed = Feed(rows.read, rows.is_alive, poll_s=3600)
    feed.attach()
    try:
        waiting = asyncio.create_task(feed.next_batch(0, 3600))
        rows.add("session_started")
        feed.poke()
        batch = await asyncio.wait_for(waiting, 30)
        assert batch is not None and [e.type for e in batch] == ["session_started"]
    finally:
        feed.detach()


def test_a_stream_waits_while_another_process_may_still_write() -> None:
    import os
    import socket
    import subprocess
    import sys

    from keel.api.sessions import writing

    here = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    ) as other:
        try:
            live = run(other.pid, here)
            assert writing([live])
            # Its run ended but its process still writes session_finished: keep waiting.
            assert writing([run(other.pid, here, "2026-12-05T00:00:00Z")])
        finally:
            other.stdin.close()  # type: ignore[union-attr]
            other.wait()
    assert not writing([])
    assert not writing([run(dead.pid, here)])
    assert not writing([run(os.getpid(), here)])  # this server
    assert not writing([run(1, "another-host", "2026-12-05T00:00:00Z")])
    assert writing([run(1, "another-host")])  # another host's live run: trusted
    # only the last run counts: an older live-looking run of a dead process does not
    assert not writing([run(1, "another-host"), run(dead.pid, here)])


def run(pid: int, host: str, ended_at: str | None = None) -> RunRecord:
    """A run recorded now, after its process started (as Keel records one)."""
    from datetime import UTC, datetime

    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    return RunRecord(id=pid, pid=pid, host=host, started_at=now, ended_at=ended_at)
