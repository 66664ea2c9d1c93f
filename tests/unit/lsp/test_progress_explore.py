"""The editor's session progress names each exploration tool call as it runs."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from lsprotocol import types as T

from keel.engine.events import Explore
from keel.lsp.progress import ProgressReporter
from tests.unit.event_samples import STARTED
from tests.unit.lsp.doubles import RecordingClient, TaskList


async def test_explore_events_are_progress_reports() -> None:
    client, spawn = RecordingClient(), TaskList()
    reporter = ProgressReporter(client, spawn)
    reporter.on_event("s1", replace(STARTED, task="Fix it"), 0, 0)
    ran = Explore(
        tool="open_file", arguments={"path": "click/core.py"}, chars=9, refused=False, tier="a"
    )
    reporter.on_event("s1", ran, 0, 0)
    reporter.on_event("s1", replace(ran, arguments={"path": ".env"}, refused=True), 0, 0)
    await asyncio.gather(*spawn.tasks)
    values = [params.value for method, params in client.sent if method == T.PROGRESS]
    messages = [v.message for v in values if isinstance(v, T.WorkDoneProgressReport)]
    assert messages == ["exploring: open_file click/core.py", "exploring: open_file .env (refused)"]
