"""The live-update hub: a page that goes away leaves nothing behind for the poller."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from keel.dashboard.queries import Reader
from keel.dashboard.server import Hub


async def test_a_stream_cancelled_while_it_subscribes_leaves_no_topic(tmp_path: Path) -> None:
    hub = Hub(Reader.for_environment({}))
    entered = asyncio.Event()

    async def watch() -> None:
        async with hub.subscribe([tmp_path / ".keel" / "keel.db"], "s-1"):
            entered.set()

    task = asyncio.get_running_loop().create_task(watch())
    await asyncio.sleep(0)  # the task now waits on the first read of the store's mark
    task.cancel()  # the page closed meanwhile
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not entered.is_set()
    assert hub._topics == {}  # nothing left for the poller to watch forever
    await hub.close()
