"""``keel.server.plan`` and ``keel.server.explain`` driven like an editor: results, Markdown,
progress, errors, a loop that keeps serving, and a workspace left exactly as it was."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as T
from pygls.exceptions import JsonRpcException

from tests.e2e.conftest import Starter
from tests.e2e.editor import Keel
from tests.integration.conftest import node, plan
from tests.integration.test_modes import workspace_digest

INVALID_PARAMS = -32602
REQUEST_FAILED = -32803
CALC = "def add(a, b):\n    return a + b\n"


def explanation(attempt: int = 1, **reply: Any) -> dict[str, Any]:
    return {"tier": "architect", "node": None, "attempt": attempt, "reply": reply}


def progress_titles(keel: Keel) -> list[tuple[str, str]]:
    """(begin title, end message) of every finished progress the client saw."""
    out = []
    for reports in keel.client.progress_reports.values():
        begins = [r for r in reports if isinstance(r, T.WorkDoneProgressBegin)]
        ends = [r for r in reports if isinstance(r, T.WorkDoneProgressEnd)]
        if begins and ends:
            out.append((begins[0].title, ends[-1].message or ""))
    return out


async def refused(keel: Keel, command: str, *arguments: Any) -> JsonRpcException:
    with pytest.raises(JsonRpcException) as caught:
        await keel.command(command, *arguments)
    return caught.value


async def test_plan_answers_with_the_dag_and_changes_nothing(
    start_keel: Starter, workspace: Path
) -> None:
    (workspace / "calc.py").write_text(CALC)
    (workspace / "zz.py").write_text("def zz():\n    return 1\n")
    before = workspace_digest(workspace)
    entries = [
        plan(
            node("sub", ["calc.py"], title="Add subtract"),
            node("tests", ["test_calc.py"], kind="unit_test", depends_on=["sub"]),
        )
    ]
    keel = await start_keel(entries)
    result = await keel.command(
        "keel.server.plan", {"task": "Add subtract", "file": keel.uri("zz.py")}
    )
    assert [n["id"] for n in result["plan"]["nodes"]] == ["sub", "tests"]
    assert result["invalidAttempts"] == []
    assert result["markdown"].startswith("# Plan: Add subtract")
    assert "## tests: Node tests" in result["markdown"]
    # The editor's file came first in what the architect saw (the repository map's focus).
    (request,) = [r for r in keel.model.requests if r.method == "POST"]
    prompt = request.body["messages"][-1]["content"]
    assert "Repository map" in prompt
    assert prompt.index("zz.py") < prompt.index("calc.py")
    assert ("Keel: planning", "done") in progress_titles(keel)
    assert workspace_digest(workspace) == before
    assert not (workspace / ".keel").exists()


async def test_explain_answers_with_checked_citations(start_keel: Starter, workspace: Path) -> None:
    (workspace / "calc.py").write_text(CALC)
    reply = explanation(
        answer="`add` returns the sum.",
        citations=[{"path": "calc.py", "line": 1}, {"path": "calc.py", "line": 40}],
    )
    keel = await start_keel([reply])
    result = await keel.command("keel.server.explain", {"question": "add()"})
    assert result["answer"] == "`add` returns the sum."
    uri = keel.uri("calc.py")
    assert result["citations"] == [{"path": "calc.py", "line": 1, "uri": uri}]
    assert result["dropped"] == [
        {"path": "calc.py", "line": 40, "reason": "calc.py has only 2 lines"}
    ]
    assert f"- [calc.py:1]({uri}#L1)" in result["markdown"]
    assert "## Dropped citations" in result["markdown"]
    assert ("Keel: explaining", "done") in progress_titles(keel)
    assert not (workspace / ".keel").exists()


async def test_bad_requests_and_bad_replies_get_clear_errors(start_keel: Starter) -> None:
    bad = [{"tier": "architect", "node": None, "attempt": n, "text": "no idea"} for n in (1, 2, 3)]
    keel = await start_keel(bad)
    cases: list[tuple[str, list[Any], int, str]] = [
        ("keel.server.plan", [], INVALID_PARAMS, "task: Field required"),
        ("keel.server.plan", [{"task": ""}], INVALID_PARAMS, "task"),
        ("keel.server.explain", [{"question": "x", "extra": 1}], INVALID_PARAMS, "extra"),
        ("keel.server.explain", [{"question": "x", "file": "file:///etc/passwd"}],
         INVALID_PARAMS, "not a file of the workspace"),
        ("keel.server.explain", [{"question": "what?"}], REQUEST_FAILED,
         "no valid explanation after 3 attempts"),
    ]  # fmt: skip
    for command, arguments, code, says in cases:
        failure = await refused(keel, command, *arguments)
        assert failure.code == code and says in str(failure), (command, str(failure))
    assert ("Keel: explaining", "failed") in progress_titles(keel)
    status = await keel.command("keel.server.status")  # still serving
    assert status["sessionId"] is None


async def test_the_server_keeps_answering_while_explain_waits(start_keel: Starter) -> None:
    keel = await start_keel([explanation(answer="Slowly.", citations=[])], latency_s=2.0)
    asking = asyncio.ensure_future(keel.command("keel.server.explain", {"question": "why"}))
    await asyncio.to_thread(keel.model.wait_for_requests, 1, 30)
    for _ in range(5):
        status = await keel.command("keel.server.status")
        assert status["sessionId"] is None
    assert not asking.done(), "the answer came before the status: the model was not slow"
    assert (await asking)["answer"] == "Slowly."


async def test_plan_runs_beside_a_session_that_holds_the_workspace(
    start_keel: Starter, workspace: Path
) -> None:
    """Plan takes no lock and touches no store: a session waiting for approval (holding the
    workspace lock) neither blocks it nor is disturbed by it."""
    from tests.integration.conftest import bundle

    entries = [
        plan(node("node-1", ["notes.txt"], title="Notes")),
        bundle("node-1", writes={"notes.txt": "hello\n"}),
    ]
    keel = await start_keel(entries)
    started = await keel.command("keel.server.startSession", {"task": "Write notes"})
    proposal = await keel.proposal("node-1")
    result = await keel.command("keel.server.plan", {"task": "Write notes"})
    assert [n["id"] for n in result["plan"]["nodes"]] == ["node-1"]
    status = await keel.command("keel.server.status")
    assert status["sessionId"] == started["sessionId"]
    assert [b["bundleId"] for b in status["pendingBundles"]] == [proposal["bundleId"]]
    assert not (workspace / "notes.txt").exists()
    assert (await keel.command("keel.server.abort", {}))["aborted"] == [started["sessionId"]]


EXPLORE = {
    "tier": "architect",
    "node": None,
    "attempt": 1,
    "turn": 1,
    "tool_calls": [
        {"name": "open_file", "arguments": {"path": "calc.py"}},
        {"name": "open_file", "arguments": {"path": ".git/config"}},
    ],
}


def progress_messages(keel: Keel) -> list[str | None]:
    return [
        report.message
        for reports in keel.client.progress_reports.values()
        for report in reports
        if isinstance(report, T.WorkDoneProgressReport)
    ]


async def test_plan_explores_and_says_so(start_keel: Starter, workspace: Path) -> None:
    """The architect's tool calls reach the model; the result lists them and the progress
    reports each one, a refusal marked as such."""
    (workspace / "calc.py").write_text(CALC)
    before = workspace_digest(workspace)
    keel = await start_keel([EXPLORE, plan(node("sub", ["calc.py"], title="Subtract"))])
    planned = await keel.command("keel.server.plan", {"task": "Add subtract"})
    assert [n["id"] for n in planned["plan"]["nodes"]] == ["sub"]
    assert [(e["tool"], e["arguments"], e["refused"]) for e in planned["explore"]] == [
        ("open_file", {"path": "calc.py"}, False),
        ("open_file", {"path": ".git/config"}, True),
    ]
    assert "never read" in planned["explore"][1]["reason"]
    second = [r for r in keel.model.requests if r.method == "POST"][1]
    assert "1  def add(a, b):" in str(second.body)
    assert progress_messages(keel) == [
        "exploring: open_file calc.py",
        "exploring: open_file .git/config (refused)",
    ]
    assert workspace_digest(workspace) == before


async def test_explain_explores_and_lists_the_calls(start_keel: Starter, workspace: Path) -> None:
    (workspace / "calc.py").write_text(CALC)
    before = workspace_digest(workspace)
    answer = explanation(answer="Sums.", citations=[{"path": "calc.py", "line": 2}])
    keel = await start_keel([EXPLORE, answer])
    explained = await keel.command("keel.server.explain", {"question": "what sums?"})
    assert explained["citations"] == [{"path": "calc.py", "line": 2, "uri": keel.uri("calc.py")}]
    assert [e["refused"] for e in explained["explore"]] == [False, True]
    assert len(progress_messages(keel)) == 2
    assert workspace_digest(workspace) == before
