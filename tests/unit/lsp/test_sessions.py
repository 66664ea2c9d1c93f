"""keel.lsp.sessions: start, resume, abort and the editor sink, with in-memory doubles.

The engine is a script over the real sink and approver the service hands it, so these tests
see what the editor would: the views, ``keel/bundleProposed``, progress, and pending bundles
withdrawn when a session stops.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as T

from keel.engine import events as ev
from keel.engine.ports import Approver, Decision, EventSink, KeelError
from keel.lsp.bundles import BundleRegistry
from keel.lsp.errors import RequestFailed
from keel.lsp.evidence import EditorEvidenceSource
from keel.lsp.progress import ProgressReporter
from keel.lsp.sessions import Sessions
from keel.lsp.views import SessionView
from tests.unit.lsp.doubles import (
    Editor,
    MemoryHost,
    RecordingClient,
    Script,
    TaskList,
    approval_request,
    scoring,
    workspace,
)


class Setup:
    def __init__(self, root: Path) -> None:
        self.client = RecordingClient()
        self.spawn = TaskList()
        self.host = MemoryHost(root)
        self.bundles = BundleRegistry()
        self.editor = Editor()
        self.views: dict[str, SessionView] = {}
        self.changes = 0
        self.evidence = EditorEvidenceSource(self.editor.documents, self.editor.diagnostics, 0)
        self.sessions = Sessions(
            views=self.views,
            workspace=workspace(root, self.host),
            bundles=self.bundles,
            scoring=scoring(self.views, self.bundles, self.editor, root),
            reporter=ProgressReporter(self.client, self.spawn),
            client=self.client,
            evidence=self.evidence,
            spawn=self.spawn,
            changed=self._changed,
        )

    def _changed(self) -> None:
        self.changes += 1

    async def settle(self) -> None:
        """Let every spawned task (sessions, progress) finish or fail."""
        await asyncio.gather(*self.spawn.tasks, return_exceptions=True)


@pytest.fixture
async def setup(tmp_path: Path) -> Any:
    made = Setup(tmp_path)
    yield made
    made.sessions.abort()
    await made.settle()


STARTED = ev.SessionStarted(
    task="Add A",
    workspace="/w",
    models={"architect": "openai:m", "actuator": "openai:m"},
    plugins=["python"],
    mode="balanced",
    epsilon=0.1,
    sandbox={"mode": "off"},
    environment={},
    instructions=[],
)
PLAN = ev.PlanReady(nodes=[ev.PlannedNode("node-1", "Add A", "code", ["a.py"], [])])
AWAITING = ev.AwaitingApproval(
    node="node-1",
    bundle="b1",
    title="Add A",
    complexity=1,
    files=["a.py"],
    v_syn=0.0,
    v_str=0.0,
    v_log=0.0,
    v_boot=0.0,
    v_sheaf=0.0,
    v=0.0,
)


def waits_for_approval(reached: asyncio.Event, decided: list[Decision | None]) -> Script:
    """A session that plans one node and parks its bundle for the editor's decision."""

    async def script(sink: EventSink, approver: Approver, resumed: bool) -> str:
        sink.emit(STARTED)
        sink.emit(PLAN)
        sink.emit(ev.NodeStarted(node="node-1", title="Add A", kind="code"))
        sink.emit(AWAITING)
        reached.set()
        decided.append(await approver.review(approval_request()))
        return "done"

    return script


async def test_start_runs_the_session_and_the_editor_sees_its_bundle(setup: Setup) -> None:
    reached, decided = asyncio.Event(), list[Decision | None]()
    setup.host.script = waits_for_approval(reached, decided)
    session_id = await setup.sessions.start("Add A")
    await reached.wait()
    view = setup.views[session_id]
    assert view.running and view.task == "Add A" and session_id in setup.sessions.runs
    assert view.nodes["node-1"].state == "awaiting_approval"
    assert setup.host.runs == [("Add A", session_id, False)]
    [proposed] = [params for method, params in setup.client.sent if method == "keel/bundleProposed"]
    assert proposed["bundleId"] == "b1" and proposed["sessionId"] == session_id
    assert setup.sessions.view_owning("a.py") == (view, view.nodes["node-1"])
    assert [b.id for b in setup.bundles.pending()] == ["b1"]
    bundle = setup.bundles.claim("b1")
    assert setup.bundles.decide(bundle, Decision(False, "user", feedback="no"), "rejected")
    await setup.settle()
    assert decided[0] is not None and decided[0].feedback == "no"
    assert not view.running and session_id not in setup.sessions.runs


async def test_a_refused_start_is_the_commands_error_and_leaves_no_view(setup: Setup) -> None:
    setup.host.refuse = KeelError("another Keel process is running here")
    with pytest.raises(KeelError, match="another Keel process"):
        await setup.sessions.start("Add A")
    assert setup.views == {} and setup.sessions.runs == {}


# The cancelled task never starts, so the session's coroutine is never awaited: that is the case.
@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited")
async def test_a_start_whose_run_is_cancelled_before_the_engine_began_fails_not_hangs(
    setup: Setup,
) -> None:
    """The server shutting down cancels the session's task before the engine is entered: the
    start answers with an error instead of waiting for an engine that never comes."""
    spawn = setup.spawn

    def cancelled_at_once(work: Any, name: str) -> asyncio.Task[Any]:
        task = spawn(work, name)
        task.cancel()
        return task

    setup.sessions._spawn = cancelled_at_once  # the server's spawner, as shutdown leaves it
    reached, decided = asyncio.Event(), list[Decision | None]()
    setup.host.script = waits_for_approval(reached, decided)
    with pytest.raises(RequestFailed, match="stopped before it began"):
        await asyncio.wait_for(setup.sessions.start("Add A"), 10)  # a guard, not a wait
    assert setup.views == {} and setup.sessions.runs == {} and not reached.is_set()


async def test_abort_withdraws_the_pending_bundle_and_ends_progress(setup: Setup) -> None:
    reached, decided = asyncio.Event(), list[Decision | None]()
    setup.host.script = waits_for_approval(reached, decided)
    session_id = await setup.sessions.start("Add A")
    await reached.wait()
    assert setup.sessions.abort("not-running") == []
    assert setup.sessions.abort() == [session_id]
    await setup.settle()
    assert setup.bundles.pending() == [] and decided == []
    assert not setup.views[session_id].running and setup.sessions.runs == {}
    ends = [
        params.value
        for method, params in setup.client.sent
        if method == T.PROGRESS and isinstance(params.value, T.WorkDoneProgressEnd)
    ]
    assert ends and all(end.message == "stopped" for end in ends)
    with pytest.raises(Exception, match="withdrawn: its session stopped"):
        setup.bundles.claim("b1")


async def test_resume_continues_the_latest_stored_session(setup: Setup) -> None:
    with pytest.raises(KeelError, match="no session yet"):
        await setup.sessions.resume(None)
    with pytest.raises(KeelError, match="no session s-9 to resume"):
        await setup.sessions.resume("s-9")
    setup.host.store.add("s-old", "Add A", {"mode": "balanced", "epsilon": 0.2})
    reached, decided = asyncio.Event(), list[Decision | None]()
    setup.host.script = waits_for_approval(reached, decided)
    assert await setup.sessions.resume(None) == "s-old"
    await reached.wait()
    assert setup.host.runs == [("Add A", "s-old", True)]
    with pytest.raises(KeelError, match="session s-old is already running"):
        await setup.sessions.resume("s-old")


async def test_two_resumes_of_one_session_at_once_run_it_once(setup: Setup) -> None:
    """The second resume arrives while the first is still entering the engine."""
    setup.host.store.add("s-old", "Add A", {"mode": "balanced"})
    reached, decided = asyncio.Event(), list[Decision | None]()
    setup.host.script = waits_for_approval(reached, decided)
    first, second = await asyncio.gather(
        setup.sessions.resume("s-old"), setup.sessions.resume("s-old"), return_exceptions=True
    )
    assert first == "s-old"
    assert isinstance(second, KeelError) and "already running" in str(second)
    await reached.wait()
    assert setup.host.runs == [("Add A", "s-old", True)]
    assert list(setup.sessions.runs) == ["s-old"]


async def test_abort_requested_by_keel_abort_stops_only_those_sessions(setup: Setup) -> None:
    reached, decided = asyncio.Event(), list[Decision | None]()
    setup.host.script = waits_for_approval(reached, decided)
    session_id = await setup.sessions.start("Add A")
    await reached.wait()
    assert await setup.sessions.abort_requested() == []
    setup.host.store.abort_requests.add(session_id)
    assert await setup.sessions.abort_requested() == [session_id]
    await setup.settle()
    assert setup.sessions.runs == {}


async def test_the_sink_records_commits_for_waiting_approvals(setup: Setup) -> None:
    async def commits(sink: EventSink, approver: Approver, resumed: bool) -> str:
        sink.emit(PLAN)
        sink.emit(ev.NodeCommitted(node="node-1", ledger="c0ffee", files=["a.py"], v=0.0))
        return "done"

    setup.host.script = commits
    session_id = await setup.sessions.start("Add A")
    await setup.settle()
    node = setup.views[session_id].nodes["node-1"]
    assert node.state == "committed" and node.ledger == "c0ffee"
    assert await setup.bundles.wait_recorded("c0ffee", None) is True
    assert setup.changes >= 2


async def test_a_command_off_the_allow_list_runs_only_when_the_user_says_so(
    setup: Setup,
) -> None:
    answers: list[bool] = []

    async def asks(sink: EventSink, approver: Approver, resumed: bool) -> str:
        answers.append(await approver.approve_command("node-1", "make"))
        setup.client.answer = T.MessageActionItem(title="Run it")
        answers.append(await approver.approve_command("node-1", "make"))
        return "done"

    setup.host.script = asks
    await setup.sessions.start("Add A")
    await setup.settle()
    assert answers == [False, True]
    asked = [p for m, p in setup.client.sent if m == "window/showMessageRequest"]
    assert "wants to run `make`" in asked[0].message


async def test_load_latest_reads_nothing_where_keel_never_ran(setup: Setup, tmp_path: Path) -> None:
    await setup.sessions.load_latest()
    assert setup.views == {}
    (tmp_path / ".keel").mkdir()
    (tmp_path / ".keel" / "keel.db").write_bytes(b"")
    setup.host.store.add("s-old", "Add A")
    await setup.sessions.load_latest()
    assert setup.views["s-old"].task == "Add A" and not setup.views["s-old"].running


async def test_a_scope_file_outside_the_workspace_is_invalid(setup: Setup, tmp_path: Path) -> None:
    from keel.lsp.args import ScopeArgs

    inside = ScopeArgs(files=[(tmp_path / "a.py").as_uri()], maxNodes=1)
    assert setup.sessions.plan_scope(inside).must_own == ("a.py",)
    with pytest.raises(Exception, match="is not a file of the workspace"):
        setup.sessions.plan_scope(ScopeArgs(files=["file:///elsewhere/b.py"], maxNodes=1))
