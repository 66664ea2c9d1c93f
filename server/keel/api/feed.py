"""A session's event stream as the API serves it: the store's ``events`` rows, in id order.

Why the store and not the engine's sink: the ids must survive a reconnect and a server
restart, so they are the ``events`` table's own ids, and a client resuming with
``Last-Event-ID`` gets exactly the rows after it (nothing lost, nothing repeated). One
:class:`Feed` per watched session reads new rows once and hands them to every client.

New rows are read when the session's sink pokes the feed (a session this server runs: the
event is already stored when the sink hears it) and, for sessions another process writes (a
terminal's ``keel agent``), every ``poll_s``. A feed is *done* once it has read the
``session_finished`` event, or when nobody runs the session any more and every row is read;
clients then get the rest and the stream ends.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from keel.engine.records import EventRecord

log = logging.getLogger(__name__)

#: Rows read per query while catching up.
BATCH = 500


@dataclass(frozen=True)
class StoredEvent:
    """One ``events`` row: its id and the event as the ``--json`` line carries it."""

    id: int
    type: str
    data: str


#: Reads the events of one session after an id: ``(after, limit) -> records``.
Reader = Callable[[int, int], Awaitable[list[EventRecord]]]
#: Whether anybody (this server or another process) still runs the session.
Alive = Callable[[], Awaitable[bool]]


class Feed:
    """The events of one session read so far, and a condition clients wait on."""

    def __init__(self, read: Reader, alive: Alive, poll_s: float) -> None:
        self._read = read
        self._alive = alive
        self._poll_s = poll_s
        self._events: list[StoredEvent] = []
        self._ids: list[int] = []
        self._changed = asyncio.Condition()
        self._poked = asyncio.Event()
        self._reading = asyncio.Lock()
        self._done = False
        self._clients = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def done(self) -> bool:
        return self._done

    @property
    def idle(self) -> bool:
        """Done and nobody streams it: it may be forgotten (read again if asked again)."""
        return self._done and self._clients <= 0

    def poke(self) -> None:
        """New rows may be stored (called by the session's sink, after the store write)."""
        self._poked.set()

    async def close(self) -> None:
        """The server stops: every client's stream ends now (a reconnect resumes it)."""
        async with self._changed:
            self._done = True
            self._changed.notify_all()
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def reopen(self) -> None:
        """The session runs again (a resume): its stream is live again."""
        self._done = False
        self.poke()

    async def refresh(self) -> None:
        """Read every new row; wake the clients when there were some or the feed is done.

        One reader at a time: a watcher cancelled by its last client's leaving can still be
        finishing a read when the next client's watcher starts."""
        async with self._reading:
            await self._refresh()

    async def _refresh(self) -> None:
        fresh: list[StoredEvent] = []
        while True:
            after = fresh[-1].id if fresh else (self._ids[-1] if self._ids else 0)
            rows = await self._read(after, BATCH)
            fresh += [_event(row) for row in rows]
            if len(rows) < BATCH:
                break
        finished = any(e.type == "session_finished" for e in fresh)
        idle = not fresh and not finished and not await self._alive()
        if not fresh and not finished and not idle:
            return
        async with self._changed:
            last = self._ids[-1] if self._ids else 0
            fresh = [e for e in fresh if e.id > last]  # never an event twice
            self._events += fresh
            self._ids += [e.id for e in fresh]
            self._done = self._done or finished or idle
            self._changed.notify_all()

    def start_index(self, after: int) -> int:
        """The position of the first event whose id is above ``after``."""
        return bisect.bisect_right(self._ids, after)

    async def next_batch(self, index: int, wait_s: float) -> list[StoredEvent] | None:
        """The events from ``index`` on, waiting up to ``wait_s`` for some; ``[]`` on a
        timeout (send a keep-alive), ``None`` when the feed is done and all were taken."""
        async with self._changed:
            if index >= len(self._events) and not self._done:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), wait_s)
            if index < len(self._events):
                return self._events[index:]
            return None if self._done else []

    def attach(self) -> None:
        self._clients += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch())
        self.poke()

    def detach(self) -> None:
        self._clients -= 1
        if self._clients <= 0 and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _watch(self) -> None:
        """Read new rows on every poke, and every ``poll_s`` for other processes' writes."""
        while not self._done:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), self._poll_s)
            self._poked.clear()
            try:
                await self.refresh()
            except Exception:  # a store that went away: say so, keep the clients waiting
                log.exception("cannot read the session's events")
                await asyncio.sleep(1.0)


def _event(record: EventRecord) -> StoredEvent:
    """The stored event as its ``--json`` object (the payload is the whole object)."""
    return StoredEvent(record.id, record.type, json.dumps(dict(record.payload), default=str))
