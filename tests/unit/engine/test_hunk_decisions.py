"""Per-hunk decisions in the engine (``Decision.hunks``), with the in-memory doubles.

The node's file gets two hunks: CALL (a call at the top) and DEF (its definition at the
bottom). The plugin here reports a checker error for a file that calls without defining, so
CALL alone is unstable while DEF alone and both together are stable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from keel.bundles.hunks import bundle_hunks
from keel.engine import events as ev
from keel.engine.events import EventLog
from keel.engine.gateway import Budget, ModelGateway
from keel.engine.models import Component, NodeState, Residual, SensorReport, Tier
from keel.engine.node import NodeContext, NodeRunner
from keel.engine.ports import ApprovalRequest, Decision, SessionRecords
from keel.engine.redaction import Redactor
from keel.engine.verifier import Verifier
from tests.unit.engine.doubles import (
    EventList,
    FakeRunner,
    KeyedClient,
    MemoryLedger,
    RecordingStore,
    ScriptedApprover,
    ToyPlugin,
    bundle_reply,
)
from tests.unit.engine.test_engine_in_memory import SESSION, Replies, plan_node, settings

BASE = "a = 1\nb = 2\nc = 3\n"
BOTH = "CALL()\na = 1\nb = 2\nc = 3\nDEF = 1\n"
CALL_ONLY = "CALL()\na = 1\nb = 2\nc = 3\n"
DEF_ONLY = "a = 1\nb = 2\nc = 3\nDEF = 1\n"


class CallNeedsDef(ToyPlugin):
    async def check(self, root: Path, files: Sequence[str]) -> SensorReport:
        found = []
        for path in files:
            text = (root / path).read_text() if (root / path).exists() else ""
            if "CALL" in text and "DEF" not in text:
                found.append(Residual(Component.SYN, "CALL is not defined", "toy", path=path))
        return SensorReport("toy-check", tuple(found))


Decide = Callable[[ApprovalRequest], Decision | None]


class HunkApprover(ScriptedApprover):
    """Answers each review with a function of the request (its hunks)."""

    def __init__(self, answers: Sequence[Decide]) -> None:
        super().__init__()
        self.answers = list(answers)

    async def review(self, request: ApprovalRequest) -> Decision | None:
        self.reviewed.append(request)
        return self.answers.pop(0)(request) if self.answers else None


def ids(request: ApprovalRequest) -> dict[str, str]:
    """The request's hunk ids by what they add (``CALL`` or ``DEF``)."""
    return {
        ("CALL" if "CALL()" in h.added else "DEF"): h.id
        for h in bundle_hunks(request.changes, request.base)
    }


def context(
    tmp_path: Path,
    replies: Replies,
    approver: ScriptedApprover,
    ledger: MemoryLedger,
    **changes: object,
) -> tuple[NodeContext, RecordingStore, KeyedClient, EventList]:
    records, client, sink = RecordingStore(SESSION), KeyedClient(replies), EventList()
    handle: SessionRecords = records
    chosen = settings(**{"mode": "cautious", **changes})
    gateway = ModelGateway(
        dict.fromkeys(Tier, client), handle, budget=Budget(), log_llm=False, redact=Redactor({})
    )
    plugin = CallNeedsDef()
    ctx = NodeContext(
        SESSION,
        "add numbers",
        tmp_path,
        chosen,
        gateway,
        Verifier([plugin], chosen.weights, defer_tests=False),
        [plugin],
        ledger,
        handle,
        FakeRunner(),
        approver,
        EventLog(SESSION, handle, sink),
    )
    return ctx, records, client, sink


def replies(*contents: str) -> Replies:
    return {
        ("actuator", "n1", n): bundle_reply({"calc.py": text})
        for n, text in enumerate(contents, start=1)
    }


def actuator_prompts(client: KeyedClient) -> list[str]:
    return [r.prompt for r in client.requests if r.tier is Tier.ACTUATOR]


async def test_approving_one_hunk_commits_it_alone_and_proposes_the_rest_with_its_id(
    tmp_path: Path,
) -> None:
    ledger = MemoryLedger({"calc.py": BASE.encode()})
    first: dict[str, str] = {}

    def approve_def(request: ApprovalRequest) -> Decision:
        first.update(ids(request))
        return Decision(True, "user", hunks=[first["DEF"]])

    def approve_rest(request: ApprovalRequest) -> Decision:
        assert ids(request) == {"CALL": first["CALL"]}  # the same id, in a new bundle
        return Decision(True, "user")

    approver = HunkApprover([approve_def, approve_rest])
    ctx, records, client, sink = context(tmp_path, replies(BOTH), approver, ledger)
    assert await NodeRunner(ctx, plan_node()).run() is NodeState.COMMITTED
    assert [e.files for e in ledger.log] == [("calc.py",), ("calc.py",)]
    assert len(approver.reviewed) == 2
    assert approver.reviewed[0].bundle_id != approver.reviewed[1].bundle_id
    assert approver.reviewed[1].base["calc.py"] == DEF_ONLY.encode()
    assert ledger.files["calc.py"] == BOTH.encode()
    assert approver.settlements[0].ledger_sha == ledger.log[0].sha
    (verified,) = sink.of(ev.HunksVerified)
    assert verified.stable and verified.hunks == [first["DEF"]]
    assert [e.ledger for e in sink.of(ev.BundlePartiallyCommitted)] == [ledger.log[0].sha]
    assert len(actuator_prompts(client)) == 1  # the rest needed no model call
    # the intent was recorded for the bundle, with the hunks named, and confirmed
    assert records.approvals[0].note == f"hunks {first['DEF']}"
    assert records.approvals[0].bundle_id == approver.reviewed[0].bundle_id
    assert records.approvals[0].ledger_sha == ledger.log[0].sha


async def test_hunks_unstable_alone_fail_and_the_same_bundle_is_asked_again(
    tmp_path: Path,
) -> None:
    ledger = MemoryLedger({"calc.py": BASE.encode()})
    approver = HunkApprover(
        [lambda r: Decision(True, "user", hunks=[ids(r)["CALL"]]), lambda r: Decision(True)]
    )
    ctx, records, _, sink = context(tmp_path, replies(BOTH), approver, ledger)
    assert await NodeRunner(ctx, plan_node()).run() is NodeState.COMMITTED
    first, again = approver.reviewed
    assert first is again  # the very bundle, unchanged
    refusal = approver.settlements[0]
    assert refusal.ledger_sha is None and refusal.error is not None
    assert "V(x)=" in refusal.error and "CALL is not defined" in refusal.error
    (verified,) = sink.of(ev.HunksVerified)
    assert not verified.stable and verified.evidence
    assert len(ledger.log) == 1 and ledger.files["calc.py"] == BOTH.encode()
    assert [a.decision for a in records.approvals] == ["approved"]  # no intent for the failure


async def test_rejected_hunks_leave_and_reach_the_next_attempt_with_the_reason(
    tmp_path: Path,
) -> None:
    ledger = MemoryLedger({"calc.py": BASE.encode()})
    seen: dict[str, str] = {}

    def reject_call(request: ApprovalRequest) -> Decision:
        seen.update(ids(request))
        return Decision(False, "user", feedback="no calls at import", hunks=[seen["CALL"]])

    def reject_def(request: ApprovalRequest) -> Decision:
        assert ids(request) == {"DEF": seen["DEF"]}
        assert request.changes["calc.py"] == DEF_ONLY.encode()
        return Decision(False, "user", feedback="not this either", hunks=[seen["DEF"]])

    approver = HunkApprover([reject_call, reject_def, lambda r: Decision(True)])
    ctx, records, client, sink = context(tmp_path, replies(BOTH, DEF_ONLY), approver, ledger)
    assert await NodeRunner(ctx, plan_node()).run() is NodeState.COMMITTED
    prompts = actuator_prompts(client)
    assert len(prompts) == 2  # the first rejection needed no model call
    second = prompts[1]
    assert "The reviewer rejected these changes:" in second
    assert "+CALL()" in second and "Reason: no calls at import" in second
    assert "+DEF = 1" in second and "Reason: not this either" in second
    assert [(e.hunks, e.remaining) for e in sink.of(ev.HunksRejected)] == [
        ([seen["CALL"]], 1),
        ([seen["DEF"]], 0),
    ]
    assert [a.decision for a in records.approvals] == ["rejected", "approved"]
    assert ledger.files["calc.py"] == DEF_ONLY.encode()


async def test_rejecting_every_hunk_at_once_is_a_whole_rejection(tmp_path: Path) -> None:
    ledger = MemoryLedger({"calc.py": BASE.encode()})
    approver = HunkApprover(
        [
            lambda r: Decision(False, "user", feedback="start over", hunks=list(ids(r).values())),
            lambda r: Decision(True),
        ]
    )
    ctx, records, client, sink = context(tmp_path, replies(BOTH, DEF_ONLY), approver, ledger)
    assert await NodeRunner(ctx, plan_node()).run() is NodeState.COMMITTED
    second = actuator_prompts(client)[1]
    assert "+CALL()" in second and "+DEF = 1" in second and "start over" in second
    assert len(sink.of(ev.BundleRejected)) == 1
    assert records.approvals[0].decision == "rejected"


class CrashingLedger(MemoryLedger):
    """A ledger whose first commit dies (as a killed process would, after the intent)."""

    crashed = False

    async def commit(
        self,
        changes: Mapping[str, bytes | None],
        base: Mapping[str, bytes | None],
        message: str,
        trailers: Mapping[str, str],
    ) -> str:
        if not self.crashed:
            self.crashed = True
            raise KeyboardInterrupt
        return await super().commit(changes, base, message, trailers)


async def test_a_crash_after_a_hunk_approval_honours_it_verified_again(
    tmp_path: Path,
) -> None:
    ledger = CrashingLedger({"calc.py": BASE.encode()})
    chosen: dict[str, str] = {}

    def approve_def(request: ApprovalRequest) -> Decision:
        chosen.update(ids(request))
        return Decision(True, "carol", hunks=[chosen["DEF"]])

    approver = HunkApprover([approve_def])
    ctx, records, _, sink = context(tmp_path, replies(BOTH), approver, ledger)
    with pytest.raises(KeyboardInterrupt):
        await NodeRunner(ctx, plan_node()).run()
    bundle_id = approver.reviewed[0].bundle_id
    assert [(a.decision, a.ledger_sha, a.bundle_id, a.note) for a in records.approvals] == [
        ("approved", None, bundle_id, f"hunks {chosen['DEF']}")
    ]
    # resumed: the same bundle is not asked about; its hunk is verified again and committed,
    # and the rest is proposed (and nobody answers yet)
    assert await NodeRunner(ctx, plan_node()).run() is NodeState.AWAITING_APPROVAL
    assert len(sink.of(ev.HunksVerified)) == 2
    assert [e.files for e in ledger.log] == [("calc.py",)]
    assert ledger.files["calc.py"] == DEF_ONLY.encode()
    assert records.approvals[0].ledger_sha == ledger.log[0].sha
    assert records.approvals[0].actor == "carol"
    (bundle, rest) = approver.reviewed
    assert bundle.bundle_id == bundle_id and ids(rest) == {"CALL": chosen["CALL"]}


async def test_a_recorded_hunk_approval_that_no_longer_holds_is_closed_and_asked_again(
    tmp_path: Path,
) -> None:
    ledger = MemoryLedger({"calc.py": BASE.encode()})
    approver = HunkApprover([])  # nobody answers
    ctx, records, _, _ = context(tmp_path, replies(BOTH), approver, ledger)
    assert await NodeRunner(ctx, plan_node()).run() is NodeState.AWAITING_APPROVAL
    request = approver.reviewed[0]
    call = ids(request)["CALL"]  # not stable alone
    await records.record_approval(
        "n1", "approved", "carol", None, f"hunks {call}", bundle=request.bundle_id
    )
    assert await NodeRunner(ctx, plan_node()).run() is NodeState.AWAITING_APPROVAL
    assert ledger.log == [] and len(approver.reviewed) == 2
    closed = records.approvals[-1]
    assert (closed.decision, closed.actor) == ("refused", "verifier")
    assert "alone are not stable" in closed.note
    # and an approval naming hunks that are not this bundle's does not stand either
    await records.record_approval(
        "n1", "approved", "carol", None, "hunks 0badc0ffee00", bundle=request.bundle_id
    )
    assert await NodeRunner(ctx, plan_node()).run() is NodeState.AWAITING_APPROVAL
    assert ledger.log == [] and len(approver.reviewed) == 3


async def test_unknown_hunk_ids_commit_nothing_and_ask_again(tmp_path: Path) -> None:
    ledger = MemoryLedger({"calc.py": BASE.encode()})
    approver = HunkApprover([lambda r: Decision(True, "user", hunks=["000000000000"])])
    ctx, _, _, _ = context(tmp_path, replies(BOTH), approver, ledger)
    assert await NodeRunner(ctx, plan_node()).run() is NodeState.AWAITING_APPROVAL
    assert "no hunk 000000000000" in (approver.settlements[0].error or "")
    assert ledger.log == [] and len(approver.reviewed) == 2


async def test_what_is_left_after_a_hunk_decision_goes_back_to_the_reviewer(
    tmp_path: Path,
) -> None:
    """In balanced mode the two-file bundle is asked about (complexity 2 > K=1); what is left
    once calc.py's hunks are committed is one file, which policy alone would commit unasked."""
    ledger = MemoryLedger({"calc.py": BASE.encode(), "b.py": b"b = 1\n"})
    two = {
        ("actuator", "n1", 1): bundle_reply({"calc.py": DEF_ONLY, "b.py": "b = 2\n"}),
    }

    def approve_calc(request: ApprovalRequest) -> Decision:
        calc = [h.id for h in bundle_hunks(request.changes, request.base) if h.path == "calc.py"]
        return Decision(True, "user", hunks=calc)

    approver = HunkApprover([approve_calc])
    ctx, _, _, _ = context(tmp_path, two, approver, ledger, mode="balanced", complexity_k=1)
    runner = NodeRunner(ctx, plan_node(owns=("calc.py", "b.py")))
    assert await runner.run() is NodeState.AWAITING_APPROVAL  # b.py waits for the reviewer
    assert [sorted(r.changes) for r in approver.reviewed] == [["b.py", "calc.py"], ["b.py"]]
    assert [e.files for e in ledger.log] == [("calc.py",)]
    assert ledger.files["b.py"] == b"b = 1\n"


async def test_a_hunk_of_a_crlf_file_without_a_final_newline_keeps_its_bytes(
    tmp_path: Path,
) -> None:
    base = b"a = 1\r\nb = 2\r\nc = 3"
    after = b"a = 10\r\nb = 2\r\nc = 30"
    ledger = MemoryLedger({"calc.py": base})
    approver = HunkApprover(
        [lambda r: Decision(True, "user", hunks=[bundle_hunks(r.changes, r.base)[1].id])]
    )
    proposed = {("actuator", "n1", 1): bundle_reply({"calc.py": after.decode()})}
    ctx, _, _, _ = context(tmp_path, proposed, approver, ledger)
    assert await NodeRunner(ctx, plan_node()).run() is NodeState.AWAITING_APPROVAL
    assert ledger.files["calc.py"] == b"a = 1\r\nb = 2\r\nc = 30"
    (_, rest) = approver.reviewed
    assert rest.changes["calc.py"] == after and rest.base["calc.py"] == ledger.files["calc.py"]
