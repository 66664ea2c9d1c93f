"""A bug in one feature handler is reported to the user and contained: the request gets an
error, a notification's failure is shown, and the server keeps answering everything else.
The bug is planted by ``tests/e2e/faulty_server.py``, which runs the real server otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from lsprotocol import types as T
from pygls.exceptions import JsonRpcException

from tests.e2e.conftest import Starter
from tests.e2e.editor import Keel
from tests.e2e.test_review_flow import entries

FAULTY = [sys.executable, "-m", "tests.e2e.faulty_server"]


async def test_a_crashing_handler_is_reported_and_contained(
    start_keel: Starter, workspace: Path
) -> None:
    keel: Keel = await start_keel(entries(), command=FAULTY)
    keel.open("boom.py", "x = 1\n")  # didOpen: its handler raises

    def shown() -> list[str]:
        return [m.message for m in keel.client.messages if m.type == T.MessageType.Error]

    with pytest.raises(JsonRpcException) as crashed:
        await keel.hover("boom.py")  # a request: its handler raises
    assert "planted bug" in str(crashed.value)
    # Anything the server sent before its next reply has arrived by then (one ordered stream).
    status = await keel.command("keel.server.status")
    assert status["sessionId"] is None
    assert any("planted bug" in m for m in shown()), keel.client.messages
    logged = [m.message for m in keel.client.log_messages if m.type == T.MessageType.Error]
    assert any("a request failed inside Keel" in m and "planted bug" in m for m in logged)

    # Contained: the server still answers, and sessions still run.
    started = await keel.command("keel.server.startSession", {"task": "Add calc and notes"})
    calc = await keel.proposal("node-1")
    report = await keel.hover("calc.py")
    assert "awaiting approval" in report
    approved = await keel.command("keel.server.approve", {"bundleId": calc["bundleId"]})
    assert approved["ledgerEntry"]
    status = await keel.command("keel.server.status")
    assert status["sessionId"] == started["sessionId"]
