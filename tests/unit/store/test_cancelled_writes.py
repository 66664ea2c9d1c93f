"""A write whose caller is cancelled (an aborted session) still commits or rolls back: it
never leaves the connection inside an open transaction for the next write to trip on."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from keel.engine.events import WarningEvent
from keel.store import SqliteStore


async def test_a_cancelled_write_does_not_break_the_next(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "keel.db")
    try:
        s1 = store.session("s1")
        await s1.create_session("task", {})
        first = asyncio.ensure_future(s1.record_event(WarningEvent(message="first")))
        await asyncio.sleep(0)  # let it start its transaction
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        await s1.record_event(WarningEvent(message="second"))  # raised "within a transaction"
        messages = [e.payload["message"] for e in await s1.events()]
        assert messages == ["first", "second"]
    finally:
        await store.close()
