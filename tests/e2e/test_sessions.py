"""Sessions from the editor: "Keel: Fix with agent", cancelling through the progress token,
and ``keel.server.abort``. A stopped session ends ``aborted`` and its bundles are withdrawn.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lsprotocol import types as T
from pygls.exceptions import JsonRpcException

from tests.e2e.conftest import Starter, server_env
from tests.e2e.editor import Keel, plain
from tests.integration.conftest import bundle, node, plan, run_keel

FIXED = "def add(a: int, b: int) -> int:\n    return a + b\n"


def entries() -> list[dict[str, object]]:
    return [
        plan(node("node-1", ["calc.py"], title="Fix calc.py")),
        bundle("node-1", writes={"calc.py": FIXED}),
    ]


async def _stopped(keel: Keel, session_id: str) -> dict[str, object]:
    await keel.changes.wait_for(
        lambda items: any(
            c["sessionId"] == session_id and c["outcome"] == "aborted" for c in items
        ),
        f"{session_id} to end aborted",
    )
    status = await keel.command("keel.server.status")
    assert status["sessionId"] == session_id and status["outcome"] == "aborted"
    assert not status["running"] and status["pendingBundles"] == []
    return status


async def test_fix_with_agent_then_cancel_through_the_progress_token(
    start_keel: Starter, workspace: Path
) -> None:
    keel: Keel = await start_keel(entries())
    keel.open("calc.py", "def add(a, b):\n    return a + c\n")
    broken = T.Diagnostic(
        range=T.Range(T.Position(1, 15), T.Position(1, 16)),
        message='"c" is not defined',
        severity=T.DiagnosticSeverity.Error,
        source="Pylance",
    )
    (fix,) = await keel.code_actions("calc.py", [broken], line=1)
    assert fix.title == "Keel: Fix with agent" and fix.kind == T.CodeActionKind.QuickFix
    assert fix.command is not None and fix.command.command == "keel.server.startSession"
    started = await keel.command(fix.command.command, *plain(fix.command.arguments))
    proposal = await keel.proposal("node-1")
    assert proposal["sessionId"] == started["sessionId"]
    architect = json.dumps(keel.model.requests[0].body)
    assert "Fix the error in calc.py at line 2 (reported by Pylance)" in architect
    assert '\\\\"c\\\\" is not defined' in architect or '\\"c\\" is not defined' in architect

    (token,) = [
        t
        for t, reports in keel.client.progress_reports.items()
        if str(t).endswith(tuple(f"-session-{n}" for n in range(1, 10)))
        and isinstance(reports[0], T.WorkDoneProgressBegin)
    ]
    keel.client.window_work_done_progress_cancel(T.WorkDoneProgressCancelParams(token=token))
    await _stopped(keel, started["sessionId"])
    with pytest.raises(JsonRpcException) as gone:
        await keel.command("keel.server.approve", {"bundleId": proposal["bundleId"]})
    assert "withdrawn" in str(gone.value)
    assert not (workspace / "calc.py").exists()


async def test_fix_with_agent_holds_the_plan_to_one_node_owning_the_file(
    start_keel: Starter,
) -> None:
    """The task asks for one node; the scope makes it so: a sprawling plan is sent back."""
    sprawling = plan(
        node("node-1", ["util.py"], title="Helper"),
        node("node-2", ["calc.py"], depends_on=["node-1"], title="Fix calc.py"),
    )
    keel: Keel = await start_keel([sprawling, {**entries()[0], "attempt": 2}, entries()[1]])
    keel.open("calc.py", "def add(a, b):\n    return a + c\n")
    broken = T.Diagnostic(
        range=T.Range(start=T.Position(1, 15), end=T.Position(1, 16)),
        message='"c" is not defined',
        severity=T.DiagnosticSeverity.Error,
        source="Pylance",
    )
    (fix,) = await keel.code_actions("calc.py", [broken], line=1)
    assert fix.command is not None
    (argument,) = plain(fix.command.arguments)
    assert argument["scope"] == {"files": [keel.uri("calc.py")], "maxNodes": 1}
    await keel.command(fix.command.command, argument)
    await keel.proposal("node-1")
    retried = json.dumps(keel.model.requests[1].body)
    assert "allows at most 1 node(s) and the plan has 2" in retried
    status = await keel.command("keel.server.status")
    assert [n["id"] for n in status["nodes"]] == ["node-1"]


async def test_a_scope_outside_the_workspace_is_invalid(start_keel: Starter) -> None:
    keel: Keel = await start_keel(entries())
    with pytest.raises(JsonRpcException) as bad:
        await keel.command(
            "keel.server.startSession",
            {"task": "Fix it", "scope": {"files": ["file:///etc/passwd"], "maxNodes": 1}},
        )
    assert "not a file of the workspace" in str(bad.value)


async def test_abort_command_stops_the_running_session(start_keel: Starter) -> None:
    keel: Keel = await start_keel(entries())
    started = await keel.command("keel.server.startSession", {"task": "Fix calc.py in Python"})
    await keel.proposal("node-1")
    assert await keel.command("keel.server.abort", {}) == {"aborted": [started["sessionId"]]}
    await _stopped(keel, started["sessionId"])
    assert await keel.command("keel.server.abort") == {"aborted": []}


async def test_keel_abort_from_a_terminal_stops_the_session_not_the_server(
    start_keel: Starter, workspace: Path, tmp_path: Path
) -> None:
    keel: Keel = await start_keel(entries())
    started = await keel.command("keel.server.startSession", {"task": "Fix calc.py in Python"})
    await keel.proposal("node-1")
    done = run_keel("abort", "-w", str(workspace), env=server_env(tmp_path, keel.model, None))
    assert done.returncode == 0, done.stderr
    await _stopped(keel, started["sessionId"])
    assert keel.client._server is not None and keel.client._server.returncode is None
    status = await keel.command("keel.server.status")  # still serving
    assert status["outcome"] == "aborted"


async def test_a_command_off_the_allow_list_is_asked_about(start_keel: Starter) -> None:
    entries = [
        plan(node("node-1", ["calc.py"], title="Calc")),
        bundle("node-1", writes={"calc.py": FIXED}, commands=["touch marker"]),
    ]
    keel: Keel = await start_keel(entries)
    started = await keel.command("keel.server.startSession", {"task": "Add calc.py in Python"})
    await keel.changes.wait_for(
        lambda items: any(c["outcome"] for c in items if c["sessionId"] == started["sessionId"]),
        "the session to finish",
    )
    (question,) = keel.questions  # the client answered nothing: the command does not run
    assert "wants to run `touch marker`" in question.message
    assert [a.title for a in question.actions or []] == ["Run it", "Don't run"]
    status = await keel.command("keel.server.status")
    assert [n["state"] for n in status["nodes"]] == ["escalated"] and not keel.proposals
