"""Must-show 2: hovers and code actions are answered while a session waits on a slow model.

The fake model takes seconds per reply. Requests made while the architect's and then the
actuator's request are outstanding must be answered before those replies arrive; "before"
is shown by events, not by a clock: no plan (``keel/sessionChanged`` with nodes) had
arrived when the answers came back, then no bundle (``keel/bundleProposed``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from lsprotocol import types as T

from tests.e2e.conftest import Starter
from tests.e2e.editor import Keel
from tests.integration.conftest import bundle, node, plan

LATENCY_S = 2.0


def _planned(keel: Keel) -> bool:
    return any(change["nodes"] for change in keel.changes)


async def test_hover_and_code_actions_answer_while_the_model_thinks(
    start_keel: Starter, workspace: Path
) -> None:
    entries = [
        plan(node("node-1", ["calc.py"], title="Calculator module")),
        bundle("node-1", writes={"calc.py": "def add(a: int, b: int) -> int:\n    return a + b\n"}),
    ]
    keel: Keel = await start_keel(entries, latency_s=LATENCY_S)
    keel.open("README.md", "# demo\n")
    await keel.command("keel.server.startSession", {"task": "Add a Python calculator module"})
    await asyncio.to_thread(keel.model.wait_for_requests, 1, 30)  # the architect is thinking

    broken = T.Diagnostic(
        range=T.Range(T.Position(0, 0), T.Position(0, 1)),
        message="undefined name",
        severity=T.DiagnosticSeverity.Error,
        source="Pylance",
    )
    for _ in range(10):
        answers = await asyncio.gather(
            keel.client.text_document_hover_async(
                T.HoverParams(
                    text_document=T.TextDocumentIdentifier(uri=keel.uri("README.md")),
                    position=T.Position(0, 0),
                )
            ),
            keel.code_actions("README.md", [broken]),
        )
        assert answers[0] is None  # nothing owns README.md yet
        assert [a.title for a in answers[1]] == ["Keel: Fix with agent"]
    assert not _planned(keel), "the plan arrived before the answers: the model was not slow"

    await keel.changes.wait_for(lambda _: _planned(keel), "the plan")
    await asyncio.to_thread(keel.model.wait_for_requests, 2, 30)  # the actuator is thinking
    report = await keel.hover("calc.py")
    assert "`node-1` Calculator module" in report
    actions = await keel.code_actions("calc.py", [broken])
    assert [a.title for a in actions] == ["Keel: Fix with agent"]
    assert not keel.proposals, "the bundle arrived before the answers: the model was not slow"
    await keel.proposal("node-1")
