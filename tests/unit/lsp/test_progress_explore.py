"""The editor's session progress names each exploration tool call as it runs."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

from lsprotocol import types as T

from keel.engine.events import Explore
from keel.lsp.progress import ProgressReporter
from tests.unit.event_samples import STARTED


class _Progress:
    def __init__(self) -> None:
        self.tokens: dict[str, Any] = {}

    async def create_async(self, token: str) -> None:
        self.tokens[token] = True


class _Server:
    """What the reporter uses of the language server: capability, tasks, notifications."""

    def __init__(self) -> None:
        self.work_done_progress = _Progress()
        self.sent: list[Any] = []
        self.tasks: list[asyncio.Task[None]] = []

    def supports(self, name: str, default: bool) -> bool:
        return True

    def run_task(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self.tasks.append(asyncio.ensure_future(coro))

    def notify(self, method: str, params: T.ProgressParams) -> None:
        self.sent.append(params.value)


async def test_explore_events_are_progress_reports() -> None:
    server = _Server()
    reporter = ProgressReporter(server)  # type: ignore[arg-type]
    reporter.on_event("s1", replace(STARTED, task="Fix it"), 0, 0)
    ran = Explore(
        tool="open_file", arguments={"path": "click/core.py"}, chars=9, refused=False, tier="a"
    )
    reporter.on_event("s1", ran, 0, 0)
    reporter.on_event("s1", replace(ran, arguments={"path": ".env"}, refused=True), 0, 0)
    await asyncio.gather(*server.tasks)
    messages = [v.message for v in server.sent if isinstance(v, T.WorkDoneProgressReport)]
    assert messages == ["exploring: open_file click/core.py", "exploring: open_file .env (refused)"]
