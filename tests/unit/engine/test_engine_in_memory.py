"""``Engine`` and ``NodeRunner`` with in-memory doubles of every port (tests/unit/engine/
doubles.py): a store that keeps typed records, a model client answering by (tier, node,
attempt), a toy plugin whose sensors read the files, a ledger over a dict. Fast, and below
the level of the end-to-end suites: what the engine decides and records, not what git,
SQLite or a real checker do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from keel.engine import events as ev
from keel.engine.events import EventLog
from keel.engine.gateway import Budget, ModelGateway
from keel.engine.models import NodeState, Tier
from keel.engine.node import NodeContext, NodeRunner, Removals
from keel.engine.ports import Decision, RepoMap, SessionRecords, SessionStore
from keel.engine.redaction import Redactor
from keel.engine.replies import PlanNode
from keel.engine.session import Engine, SessionResult
from keel.engine.settings import EngineSettings
from keel.engine.verifier import Verifier
from tests.unit.engine.doubles import (
    EventList,
    FakeRunner,
    KeyedClient,
    MemoryLedger,
    MemoryStore,
    RecordingStore,
    ScriptedApprover,
    ToyPlugin,
    bundle_reply,
    node_spec,
    plan_reply,
)

GOOD = "def add(a, b):\n    return a + b\n"
BAD = "def add(a, b):\n    return a +  # SYNTAX\n"
SESSION = "sess-unit"

Replies = dict[tuple[str, str | None, int], object]


def settings(**changes: object) -> EngineSettings:
    base = {"mode": "yolo", "speculate": False, "max_attempts": 3}
    return EngineSettings(**{**base, **changes})  # type: ignore[arg-type]


def make_engine(
    workspace: Path,
    replies: Replies,
    *,
    store: MemoryStore | None = None,
    ledger: MemoryLedger | None = None,
    runner: FakeRunner | None = None,
    approver: ScriptedApprover | None = None,
    **changes: object,
) -> tuple[Engine, KeyedClient, EventList]:
    client, sink = KeyedClient(replies), EventList()
    port: SessionStore = store if store is not None else MemoryStore()
    engine = Engine(
        workspace=workspace,
        clients=dict.fromkeys(Tier, client),
        plugins=[ToyPlugin()],
        ledger=ledger or MemoryLedger(),
        store=port,
        runner=runner or FakeRunner(),
        sink=sink,
        approver=approver or ScriptedApprover(),
        settings=settings(**changes),
    )
    return engine, client, sink


def two_nodes() -> dict[str, object]:
    return plan_reply(
        node_spec("n1", ["calc.py"]),
        node_spec("n2", ["report.py"], depends_on=["n1"]),
    )


async def run(engine: Engine, *, resume: bool = False) -> SessionResult:
    return await engine.run("add numbers", SESSION, resume=resume)


# ----------------------------------------------------------------- Engine


async def test_a_session_commits_every_node_and_records_it(tmp_path: Path) -> None:
    store, ledger = MemoryStore(), MemoryLedger()
    replies: Replies = {
        ("architect", None, 1): two_nodes(),
        ("actuator", "n1", 1): bundle_reply({"calc.py": GOOD}),
        ("actuator", "n2", 1): bundle_reply({"report.py": "print(1)\n"}),
    }
    engine, client, sink = make_engine(tmp_path, replies, store=store, ledger=ledger)
    result = await run(engine)
    assert (result.outcome, result.reason) == ("success", "")
    assert result.nodes == {"n1": NodeState.COMMITTED, "n2": NodeState.COMMITTED}
    assert ledger.files == {"calc.py": GOOD.encode(), "report.py": b"print(1)\n"}
    assert [e.node for e in ledger.log] == ["n1", "n2"]  # dependency order
    records = store.session(SESSION)
    assert records.task == "add numbers" and records.outcome == "success"
    assert records.config["mode"] == "yolo" and records.config["epsilon"] == 0.1
    assert await records.node_states() == {"n1": "committed", "n2": "committed"}
    assert [(a.actor, a.ledger_sha) for a in records.approvals] == [
        ("yolo", ledger.log[0].sha),
        ("yolo", ledger.log[1].sha),
    ]
    assert all(a.stable for a in records.attempts.values())
    assert (await records.call_totals()).calls == len(client.requests) == 3
    assert records.runs == {1: False}  # the run ended
    kinds = [e.type.value for e in sink.events]
    assert kinds[0] == "session_started" and kinds[-1] == "session_finished"
    assert [e["type"] for e in records.events] == kinds  # stored as sent, in order
    assert not (tmp_path / ".keel" / "sandboxes" / SESSION).exists()


async def test_a_model_that_fails_for_good_leaves_no_node_running(tmp_path: Path) -> None:
    """The session ends on the provider's error; the store agrees with session_finished."""
    replies: Replies = {("architect", None, 1): plan_reply(node_spec("n1", ["calc.py"]))}
    store = MemoryStore()
    engine, _client, sink = make_engine(tmp_path, replies, store=store)
    result = await run(engine)
    assert result.outcome == "failed" and "no scripted reply" in result.reason
    [finished] = sink.of(ev.SessionFinished)
    assert await store.session(SESSION).node_states() == finished.nodes == {"n1": "queued"}


async def test_a_failed_attempt_is_corrected_with_its_evidence(tmp_path: Path) -> None:
    replies: Replies = {
        ("architect", None, 1): plan_reply(node_spec("n1", ["calc.py"])),
        ("actuator", "n1", 1): bundle_reply({"calc.py": BAD}),
        ("actuator", "n1", 2): bundle_reply({"calc.py": GOOD}),
    }
    store = MemoryStore()
    engine, client, sink = make_engine(tmp_path, replies, store=store)
    result = await run(engine)
    assert result.outcome == "success"
    assert client.asked("actuator", "n1") == [1, 2]
    second = [r for r in client.requests if r.tier is Tier.ACTUATOR][1]
    assert "syntax error" in second.prompt  # the first attempt's evidence
    records = store.session(SESSION)
    first, again = records.attempts[("n1", 1)], records.attempts[("n1", 2)]
    assert (first.stable, again.stable) == (False, True)
    assert first.energy["v_syn"] > 0 and first.evidence[0]["source"] == "toy-check"
    assert ("n1", "retrying", "attempt 1 V=1.000") in records.transitions
    assert [e.attempt for e in sink.of(ev.NodeRetrying)] == [2]


async def test_a_node_that_never_stabilises_escalates_and_its_dependents_wait(
    tmp_path: Path,
) -> None:
    replies: Replies = {
        ("architect", None, 1): two_nodes(),
        ("actuator", "n1", 1): bundle_reply({"calc.py": BAD}),
        ("actuator", "n1", 2): bundle_reply({"calc.py": BAD}),
    }
    store, ledger = MemoryStore(), MemoryLedger()
    engine, client, sink = make_engine(
        tmp_path, replies, store=store, ledger=ledger, max_attempts=2
    )
    result = await run(engine)
    assert result.outcome == "failed"
    assert result.nodes["n1"] is NodeState.ESCALATED
    assert result.nodes["n2"] is not NodeState.COMMITTED
    assert "n1 (escalated)" in result.reason
    assert ledger.log == [] and client.asked("actuator", "n2") == []
    records = store.session(SESSION)
    [(node, report)] = records.escalations
    assert node == "n1" and report["attempts"] == 2 and report["evidence"]
    assert records.states["n1"] == "escalated"
    assert [e.node for e in sink.of(ev.NodeEscalated)] == ["n1"]


async def test_the_step_budget_stops_the_session_and_requeues_nothing_half_done(
    tmp_path: Path,
) -> None:
    replies: Replies = {
        ("architect", None, 1): two_nodes(),
        ("actuator", "n1", 1): bundle_reply({"calc.py": GOOD}),
        ("actuator", "n2", 1): bundle_reply({"report.py": "x = 1\n"}),
    }
    store = MemoryStore()
    engine, client, sink = make_engine(tmp_path, replies, store=store, budget=Budget(max_steps=2))
    result = await run(engine)
    assert result.budget_stop and result.reason == "step budget reached: 2 of 2 model calls"
    assert result.outcome == "partial"  # n1 was committed before the budget ran out
    assert len(client.requests) == 2  # the third call was never sent
    records = store.session(SESSION)
    assert records.states == {"n1": "committed", "n2": "queued"}
    assert records.outcome == "partial" and records.totals is not None
    assert records.totals["reason"] == result.reason
    [stop] = sink.of(ev.BudgetExceededEvent)
    assert stop.reason == "max_steps" and stop.calls == 2


async def test_sandboxes_are_written_without_syncing_to_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sandbox is thrown away and rebuilt after a crash: its files are replaced whole but
    never fsynced (one sync per file and per directory, for nothing)."""
    synced: list[str] = []
    real = os.fsync

    def recording(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    replies: Replies = {
        ("architect", None, 1): two_nodes(),
        ("actuator", "n1", 1): bundle_reply({"calc.py": GOOD}),
        ("actuator", "n2", 1): bundle_reply({"report.py": "print(1)\n"}),
    }
    ledger = MemoryLedger()
    engine, _, _ = make_engine(tmp_path, replies, ledger=ledger)
    assert (await run(engine)).outcome == "success"
    assert ledger.files["calc.py"] == GOOD.encode()  # the bundles did reach their sandboxes
    assert [path for path in synced if "/.keel/sandboxes/" in path] == []


async def test_removals_run_off_the_callers_path_and_drain_waits_for_them(
    tmp_path: Path,
) -> None:
    removals = Removals()
    await removals.drain()  # nothing pending: returns at once
    sandboxes = [tmp_path / "n1" / str(i) for i in range(3)]
    for sandbox in sandboxes:
        (sandbox / "pkg").mkdir(parents=True)
        (sandbox / "pkg" / "m.py").write_text("x = 1\n")
        removals.remove(sandbox)  # returns without waiting
    removals.remove(tmp_path / "missing")  # nothing there: no error
    await removals.drain()
    assert not any(sandbox.exists() for sandbox in sandboxes)


async def test_a_path_is_settled_only_once_its_removal_is_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node run again in one session makes ``n1/1`` again while the last run's removal of
    it may still be going (CI once saw the new sandbox deleted under its export)."""
    gate = threading.Event()
    real_rmtree = shutil.rmtree

    def held_rmtree(path: Path, ignore_errors: bool = False) -> None:
        gate.wait(30)
        real_rmtree(path, ignore_errors)

    monkeypatch.setattr(shutil, "rmtree", held_rmtree)
    removals = Removals()
    sandbox = tmp_path / "n1" / "1"
    sandbox.mkdir(parents=True)
    removals.remove(sandbox)
    waiting = asyncio.ensure_future(removals.settled(sandbox))
    await asyncio.sleep(0)  # one turn of the loop: the waiter is parked on the removal
    assert not waiting.done()
    gate.set()
    await waiting
    assert not sandbox.exists()
    await removals.settled(tmp_path / "other")  # nothing under way: returns at once


async def test_an_abort_mid_command_ends_the_session_aborted_and_requeues_the_node(
    tmp_path: Path,
) -> None:
    replies: Replies = {
        ("architect", None, 1): plan_reply(node_spec("n1", ["calc.py"])),
        ("actuator", "n1", 1): bundle_reply({"calc.py": GOOD}, commands=["make check"]),
    }
    store, runner = MemoryStore(), FakeRunner(hold=True)
    engine, _, sink = make_engine(tmp_path, replies, store=store, runner=runner)
    task = asyncio.create_task(run(engine))
    await runner.started.wait()
    assert store.session(SESSION).states == {"n1": "verifying"}
    task.cancel()
    result = await task
    assert (result.outcome, result.reason) == ("aborted", "aborted by the user")
    records = store.session(SESSION)
    assert records.states == {"n1": "queued"}
    assert "`keel resume` runs it again" in records.transitions[-1][2]
    assert records.outcome == "aborted" and records.runs == {1: False}
    assert sink.of(ev.SessionFinished)[0].outcome == "aborted"
    assert not (tmp_path / ".keel" / "sandboxes" / SESSION).exists()


async def test_a_resume_skips_committed_nodes_and_replays_recorded_replies(
    tmp_path: Path,
) -> None:
    """The first run commits n1 and leaves n2 awaiting a reviewer; the resume asks no model
    again for the plan or n1, and finishes n2 alone."""
    store, ledger = MemoryStore(), MemoryLedger()
    first: Replies = {
        ("architect", None, 1): two_nodes(),
        ("actuator", "n1", 1): bundle_reply({"calc.py": GOOD}),
        ("actuator", "n2", 1): bundle_reply({"report.py": "a = 1\nb = 2\n"}),
    }
    approver = ScriptedApprover([Decision(approved=True, actor="alice"), None])
    engine, _, _ = make_engine(
        tmp_path, first, store=store, ledger=ledger, approver=approver, mode="cautious"
    )
    result = await run(engine)
    assert result.nodes == {"n1": NodeState.COMMITTED, "n2": NodeState.AWAITING_APPROVAL}
    assert [e.node for e in ledger.log] == ["n1"]

    again = ScriptedApprover([Decision(approved=True, actor="bob")])
    engine, client, sink = make_engine(
        tmp_path, {}, store=store, ledger=ledger, approver=again, mode="cautious"
    )
    result = await run(engine, resume=True)
    assert result.outcome == "success", result.reason
    assert client.requests == []  # the plan and both bundles were replayed from the store
    assert [r.node_id for r in again.reviewed] == ["n2"]
    assert [(e.node, e.approved_by) for e in ledger.log] == [("n1", "alice"), ("n2", "bob")]
    records = store.session(SESSION)
    assert await records.node_states() == {"n1": "committed", "n2": "committed"}
    assert isinstance(sink.events[0], ev.SessionResumed)
    assert [n.node for n in sink.of(ev.NodeStarted)] == ["n2"]


class CountingMap:
    """A repository context that counts how often the architect's map is built."""

    def __init__(self) -> None:
        self.maps = 0

    async def render_map(
        self, task: str, *, focus: Sequence[str] = (), budget_tokens: int
    ) -> RepoMap:
        self.maps += 1
        return RepoMap(text="Repository map:\ncalc.py:", tokens=4)

    async def related_definitions(self, paths: Sequence[str], *, budget_tokens: int) -> str:
        return ""


async def test_a_resume_replays_the_plan_without_mapping_the_workspace(tmp_path: Path) -> None:
    """The map only feeds the architect's prompt: a resume whose plan is recorded never builds
    it (docs/benchmarks.md, start-up), and a fresh session builds it once."""
    store, ledger, context = MemoryStore(), MemoryLedger(), CountingMap()
    first: Replies = {
        ("architect", None, 1): two_nodes(),
        ("actuator", "n1", 1): bundle_reply({"calc.py": GOOD}),
    }
    engine, client, _ = make_engine(
        tmp_path, first, store=store, ledger=ledger, budget=Budget(max_steps=2)
    )
    engine.context = context
    result = await run(engine)
    assert result.budget_stop and context.maps == 1
    assert "Repository map:" in client.requests[0].prompt

    again: Replies = {("actuator", "n2", 1): bundle_reply({"report.py": "a = 1\n"})}
    engine, client, _ = make_engine(tmp_path, again, store=store, ledger=ledger)
    engine.context = context
    result = await run(engine, resume=True)
    assert result.outcome == "success", result.reason
    assert context.maps == 1  # the recorded plan was replayed without its prompt
    assert [(r.tier.value, r.node_id) for r in client.requests] == [("actuator", "n2")]


async def test_a_resume_completes_a_commit_the_store_never_heard_of(tmp_path: Path) -> None:
    """Killed between the ledger commit and its records: git is the truth, the store is
    completed from the commit, and the node is not run again."""
    store, ledger = MemoryStore(), MemoryLedger()
    replies: Replies = {
        ("architect", None, 1): plan_reply(node_spec("n1", ["calc.py"])),
        ("actuator", "n1", 1): bundle_reply({"calc.py": GOOD}),
    }
    engine, _, _ = make_engine(tmp_path, replies, store=store, ledger=ledger)
    assert (await run(engine)).outcome == "success"
    records = store.session(SESSION)
    records.states["n1"] = "verifying"  # as if the process died before recording the commit
    records.approvals.clear()
    engine, client, sink = make_engine(tmp_path, {}, store=store, ledger=ledger)
    result = await run(engine, resume=True)
    assert result.outcome == "success" and client.requests == []
    assert records.states["n1"] == "committed"
    assert [(a.node_id, a.ledger_sha) for a in records.approvals] == [("n1", ledger.log[0].sha)]
    assert sink.of(ev.NodeCommitted)[0].recovered is True


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "killed-before-record"])
async def test_a_resume_after_part_of_a_bundle_was_committed_proposes_the_rest(
    tmp_path: Path, recorded: bool
) -> None:
    """The reviewer approves calc.py of a two-file bundle and the session stops while the rest
    waits (or is killed before the store hears of the commit): the commit does not finish
    the node, so the resume proposes report.py again instead of calling the node done."""
    store, ledger = MemoryStore(), MemoryLedger()
    replies: Replies = {
        ("architect", None, 1): plan_reply(node_spec("n1", ["calc.py", "report.py"])),
        ("actuator", "n1", 1): bundle_reply({"calc.py": GOOD, "report.py": "a = 1\n"}),
    }
    approver = ScriptedApprover([Decision(approved=True, actor="alice", files=["calc.py"]), None])
    engine, _, _ = make_engine(
        tmp_path, replies, store=store, ledger=ledger, approver=approver, mode="cautious"
    )
    result = await run(engine)
    assert result.nodes == {"n1": NodeState.AWAITING_APPROVAL}
    assert [sorted(r.changes) for r in approver.reviewed] == [
        ["calc.py", "report.py"],
        ["report.py"],
    ]
    (part,) = ledger.log
    records = store.session(SESSION)
    if not recorded:
        (approval,) = records.approvals
        records.approvals[0] = dataclasses.replace(approval, ledger_sha=None)

    again = ScriptedApprover([Decision(approved=True, actor="bob")])
    engine, client, sink = make_engine(
        tmp_path, {}, store=store, ledger=ledger, approver=again, mode="cautious"
    )
    result = await run(engine, resume=True)
    assert result.outcome == "success", result.reason
    assert client.requests == []
    assert [sorted(r.changes) for r in again.reviewed] == [["report.py"]]
    assert [(e.node, e.approved_by) for e in ledger.log] == [("n1", "alice"), ("n1", "bob")]
    assert ledger.files == {"calc.py": GOOD.encode(), "report.py": b"a = 1\n"}
    assert [(a.actor, a.ledger_sha, a.files) for a in records.approvals] == [
        ("alice", part.sha, ["calc.py"]),
        ("bob", ledger.log[1].sha, None),
    ]
    assert not sink.of(ev.NodeCommitted)[0].recovered


# ----------------------------------------------------------------- NodeRunner


def node_context(
    tmp_path: Path,
    replies: Replies,
    *,
    approver: ScriptedApprover | None = None,
    ledger: MemoryLedger | None = None,
    **changes: object,
) -> tuple[NodeContext, RecordingStore, KeyedClient]:
    records, client = RecordingStore(SESSION), KeyedClient(replies)
    handle: SessionRecords = records
    chosen = settings(**changes)
    gateway = ModelGateway(
        dict.fromkeys(Tier, client), handle, budget=Budget(), log_llm=False, redact=Redactor({})
    )
    ctx = NodeContext(
        SESSION,
        "add numbers",
        tmp_path,
        chosen,
        gateway,
        Verifier([ToyPlugin()], chosen.weights, defer_tests=False),
        [ToyPlugin()],
        ledger or MemoryLedger(),
        handle,
        FakeRunner(),
        approver or ScriptedApprover(),
        EventLog(SESSION, handle, EventList()),
    )
    return ctx, records, client


def plan_node(node_id: str = "n1", owns: tuple[str, ...] = ("calc.py",)) -> PlanNode:
    return PlanNode.model_validate(node_spec(node_id, list(owns)))


async def test_a_rejection_with_feedback_reaches_the_next_attempt(tmp_path: Path) -> None:
    replies: Replies = {
        ("actuator", "n1", 1): bundle_reply({"calc.py": GOOD}),
        ("actuator", "n1", 2): bundle_reply({"calc.py": GOOD + "# typed\n"}),
    }
    approver = ScriptedApprover(
        [Decision(approved=False, feedback="add type hints"), Decision(approved=True)]
    )
    ctx, records, client = node_context(tmp_path, replies, approver=approver, mode="cautious")
    assert await NodeRunner(ctx, plan_node()).run() is NodeState.COMMITTED
    second = [r for r in client.requests if r.tier is Tier.ACTUATOR][1]
    assert "add type hints" in second.prompt
    assert [(a.decision, a.note) for a in records.approvals] == [
        ("rejected", "add type hints"),
        ("approved", ""),
    ]
    assert records.approvals[1].ledger_sha is not None


async def test_a_recorded_approval_stands_after_a_crash(tmp_path: Path) -> None:
    """A reviewer's approval recorded before its commit is honoured without asking again."""
    replies: Replies = {("actuator", "n1", 1): bundle_reply({"calc.py": GOOD})}
    approver = ScriptedApprover()  # would leave the node waiting if asked
    ctx, records, _ = node_context(tmp_path, replies, approver=approver, mode="cautious")
    assert await NodeRunner(ctx, plan_node()).run() is NodeState.AWAITING_APPROVAL
    bundle_id = approver.reviewed[0].bundle_id
    await records.record_approval("n1", "approved", "carol", None, bundle=bundle_id)
    assert await NodeRunner(ctx, plan_node()).run() is NodeState.COMMITTED
    assert len(approver.reviewed) == 1  # not asked again
    assert records.approvals[-1].actor == "carol" and records.approvals[-1].ledger_sha


async def test_a_user_edit_while_waiting_refuses_the_commit_and_regenerates(
    tmp_path: Path,
) -> None:
    """The ledger refuses a bundle made against content the user has since changed; the
    refusal is recorded and the next attempt is made on top of the user's version."""
    ledger = MemoryLedger({"calc.py": b"old\n"})
    replies: Replies = {
        ("actuator", "n1", 1): bundle_reply({"calc.py": GOOD}),
        ("actuator", "n1", 2): bundle_reply({"calc.py": GOOD + "# mine kept\n"}),
    }

    class EditingApprover(ScriptedApprover):
        async def review(self, request):  # type: ignore[no-untyped-def]
            if not self.reviewed:
                ledger.files["calc.py"] = b"user edit\n"
            return await super().review(request)

    approver = EditingApprover([Decision(approved=True), Decision(approved=True)])
    ctx, records, client = node_context(
        tmp_path, replies, approver=approver, ledger=ledger, mode="cautious"
    )
    assert await NodeRunner(ctx, plan_node()).run() is NodeState.COMMITTED
    assert [a.decision for a in records.approvals] == ["approved", "refused", "approved"]
    assert records.approvals[1].actor == "ledger"
    second = [r for r in client.requests if r.tier is Tier.ACTUATOR][1]
    assert "user edit" in second.prompt  # regenerated on the user's content
    assert ledger.files["calc.py"] == (GOOD + "# mine kept\n").encode()


@pytest.mark.parametrize("reply", ["not json", '{"writes": 3}'])
async def test_an_invalid_reply_is_evidence_not_a_crash(tmp_path: Path, reply: str) -> None:
    replies: Replies = {
        ("actuator", "n1", 1): reply,
        ("actuator", "n1", 2): bundle_reply({"calc.py": GOOD}),
    }
    ctx, records, _ = node_context(tmp_path, replies)
    assert await NodeRunner(ctx, plan_node()).run() is NodeState.COMMITTED
    first = records.attempts[("n1", 1)]
    assert first.bundle is None and not first.stable
    assert first.evidence[0]["source"] == "schema"
    assert records.model_calls[0].ok is False and records.model_calls[0].error


async def test_a_resumed_node_builds_on_its_replayed_attempts(tmp_path: Path) -> None:
    """Stopped after attempt 1 (a broken module and its test): the resume replays attempt 1
    from the store, so attempt 2, which rewrites only the module, still has attempt 1's test
    under it, and the commit holds both."""
    test = "from calc import add\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    store, ledger = MemoryStore(), MemoryLedger()
    first: Replies = {
        ("architect", None, 1): plan_reply(node_spec("n1", ["calc.py", "test_calc.py"])),
        ("actuator", "n1", 1): bundle_reply({"calc.py": BAD, "test_calc.py": test}),
    }
    engine, _, _ = make_engine(
        tmp_path, first, store=store, ledger=ledger, budget=Budget(max_steps=2)
    )
    assert (await run(engine)).budget_stop

    again: Replies = {("actuator", "n1", 2): bundle_reply({"calc.py": GOOD})}
    engine, client, _ = make_engine(tmp_path, again, store=store, ledger=ledger)
    result = await run(engine, resume=True)
    assert result.outcome == "success", result.reason
    assert client.asked("actuator", "n1") == [2]  # attempt 1 came from the store
    (second,) = [r for r in client.requests if r.tier is Tier.ACTUATOR]
    assert "shown as attempt 1 left them (not committed): calc.py, test_calc.py" in second.prompt
    assert ledger.files == {"calc.py": GOOD.encode(), "test_calc.py": test.encode()}
