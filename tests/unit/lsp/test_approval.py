"""keel.lsp.approval: the approval object decides pending bundles, with in-memory doubles.

The engine's side of each test is a task awaiting the bundle's decision (as
``EditorApprover.review`` does) and settling an approval the way the engine does after its
ledger commit; the client port records the edits Keel asks the editor to apply.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams

from keel.engine.models import Component, Residual
from keel.engine.ports import ApprovalRequest, Decision, Settlement
from keel.lsp.approval import Approval
from keel.lsp.bundles import BundleRegistry, PendingBundle
from keel.lsp.documents import EditorReport, digest
from keel.lsp.views import SessionView
from tests.unit.lsp.doubles import (
    Editor,
    MemoryHost,
    RecordingClient,
    approval_request,
    scoring,
    workspace,
)


class Setup:
    """An approval object over the real registry, documents and scoring, and doubles."""

    def __init__(self, root: Path, client: RecordingClient | None = None) -> None:
        self.root = root
        self.client = client or RecordingClient()
        self.host = MemoryHost(root)
        self.bundles = BundleRegistry()
        self.editor = Editor()
        self.views: dict[str, SessionView] = {"s-1": SessionView("s-1", epsilon=0.1)}
        self.runs: dict[str, asyncio.Task[Any]] = {}
        self.changes = 0
        self.decisions: list[Decision] = []
        #: Set once the engine's side has taken a decision.
        self.decided = asyncio.Event()
        self.approval = Approval(
            bundles=self.bundles,
            documents=self.editor.documents,
            editor=self.editor.diagnostics,
            editor_wait_s=0.0,
            scoring=scoring(self.views, self.bundles, self.editor, root),
            client=self.client,
            workspace=workspace(root, self.host),
            runs=self.runs,
            changed=self._changed,
        )

    def _changed(self) -> None:
        self.changes += 1

    def propose(
        self, request: ApprovalRequest, *, settle: Settlement | None = None
    ) -> PendingBundle:
        """Park ``request`` as the engine does and run the engine's side of its decision."""
        bundle = self.bundles.propose("s-1", request)

        async def engine() -> None:
            decision = await bundle.decision
            self.decisions.append(decision)
            self.decided.set()
            if not decision.approved:
                return
            settlement = settle or Settlement("c0ffee")
            if settlement.ledger_sha:
                for path, data in request.changes.items():
                    if data is not None:
                        self.host.ledger.files[path] = data
            self.bundles.settle(request, settlement)
            if settlement.ledger_sha:
                self.bundles.committed(settlement.ledger_sha)  # its node_committed event
            await asyncio.Event().wait()  # the session goes on

        self.runs["s-1"] = asyncio.ensure_future(engine())
        return bundle

    async def stop(self) -> None:
        for run in self.runs.values():
            run.cancel()
        await asyncio.gather(*self.runs.values(), return_exceptions=True)


@pytest.fixture
async def setup(tmp_path: Path) -> Any:
    made = Setup(tmp_path)
    yield made
    await made.stop()


async def test_approve_applies_the_edit_and_answers_with_the_recorded_commit(setup: Setup) -> None:
    bundle = setup.propose(approval_request())
    assert (await setup.approval.approve(bundle.id, None)).wire() == {"ledgerEntry": "c0ffee"}
    [decision] = setup.decisions
    assert decision.approved and decision.files is None and decision.created == ["a.py"]
    [edit] = setup.client.edits
    assert edit.label == "Keel: Add A"
    assert setup.bundles.pending() == [] and setup.changes >= 1
    with pytest.raises(JsonRpcInvalidParams, match="already decided: approved"):
        setup.bundles.claim(bundle.id)


async def test_an_unstable_bundle_is_refused_and_stays_pending(setup: Setup) -> None:
    bundle = setup.propose(approval_request(v=0.5))
    with pytest.raises(JsonRpcException, match=r"not stable: V\(x\)=0.500 >= epsilon 0.1"):
        await setup.approval.approve(bundle.id, None)
    assert setup.decisions == [] and setup.client.edits == []
    assert setup.bundles.claim(bundle.id) is bundle  # released: the next request may decide


async def test_reject_hands_the_feedback_to_the_engine(setup: Setup) -> None:
    bundle = setup.propose(approval_request())
    answer = await setup.approval.reject(bundle.id, "use a constant", "rejected")
    assert answer.wire() == {"bundleId": bundle.id, "decision": "rejected"}
    await setup.decided.wait()
    [decision] = setup.decisions
    assert not decision.approved and decision.feedback == "use a constant"
    with pytest.raises(JsonRpcInvalidParams, match="already decided: rejected"):
        setup.bundles.claim(bundle.id)


async def test_correct_is_a_rejection_with_the_reviewers_words(setup: Setup) -> None:
    bundle = setup.propose(approval_request())
    answer = await setup.approval.reject(bundle.id, "name it B", "correcting")
    assert answer.wire() == {"bundleId": bundle.id, "decision": "correcting"}
    await setup.decided.wait()
    (decision,) = setup.decisions
    assert decision.feedback == "name it B" and not decision.approved and decision.correction
    with pytest.raises(JsonRpcInvalidParams, match="rejected with a correction"):
        setup.bundles.claim(bundle.id)


async def test_rejecting_some_files_drops_only_those(setup: Setup) -> None:
    changes = {"a.py": b"A = 1\n", "b.py": b"B = 1\n"}
    bundle = setup.propose(approval_request(changes=changes, base={"a.py": None, "b.py": b""}))
    uri = (setup.root / "b.py").as_uri()
    await setup.approval.reject(bundle.id, "not b", "rejected", files=[uri])
    await setup.decided.wait()
    [decision] = setup.decisions
    assert decision.edits == {"b.py": b""} and decision.feedback == "not b"


async def test_a_file_outside_the_bundle_is_invalid_and_releases_the_claim(setup: Setup) -> None:
    bundle = setup.propose(approval_request())
    with pytest.raises(JsonRpcInvalidParams, match="is not a file of bundle b1"):
        await setup.approval.approve(bundle.id, [(setup.root / "other.py").as_uri()])
    assert setup.bundles.claim(bundle.id) is bundle


async def test_unsaved_edits_that_conflict_refuse_and_leave_the_bundle_pending(
    setup: Setup,
) -> None:
    bundle = setup.propose(
        approval_request(changes={"a.py": b"A = 2\n"}, base={"a.py": b"A = 0\n"})
    )
    setup.host.ledger.files["a.py"] = b"A = 0\n"
    setup.editor.open(setup.root, "a.py", "A = 9\n")  # the user's unsaved edit
    with pytest.raises(JsonRpcException, match="unsaved edits that conflict with bundle b1"):
        await setup.approval.approve(bundle.id, None)
    assert setup.client.edits == [] and setup.decisions == []
    assert setup.bundles.is_pending(bundle) and setup.bundles.claim(bundle.id) is bundle


async def test_unsaved_edits_that_merge_are_proposed_again_merged(setup: Setup) -> None:
    bundle = setup.propose(
        approval_request(changes={"a.py": b"A = 0\nB = 1\n"}, base={"a.py": b"A = 0\n"})
    )
    setup.host.ledger.files["a.py"] = b"A = 0\n"
    setup.editor.open(setup.root, "a.py", "# mine\nA = 0\n")
    with pytest.raises(JsonRpcException, match="Keel merged bundle b1 onto them"):
        await setup.approval.approve(bundle.id, None)
    await setup.decided.wait()
    [decision] = setup.decisions
    assert not decision.approved and decision.edits == {"a.py": b"# mine\nA = 0\nB = 1\n"}
    assert setup.client.edits == []


async def test_a_file_changed_on_disk_is_handed_to_the_engine_to_rebase(setup: Setup) -> None:
    bundle = setup.propose(
        approval_request(changes={"a.py": b"A = 2\n"}, base={"a.py": b"A = 0\n"}),
        settle=Settlement(None, error="a.py moved"),
    )
    setup.host.ledger.files["a.py"] = b"A = 7\n"  # saved by someone since the bundle was made
    with pytest.raises(JsonRpcException, match="changed on disk since bundle b1 was made"):
        await setup.approval.approve(bundle.id, None)
    assert setup.decisions[0].approved and setup.client.edits == []


async def test_two_approvals_of_one_bundle_exactly_one_proceeds(setup: Setup) -> None:
    bundle = setup.propose(approval_request())
    applying, go_on = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        applying.set()
        await go_on.wait()

    setup.client.while_applying = hold
    first = asyncio.ensure_future(setup.approval.approve(bundle.id, None))
    await applying.wait()
    with pytest.raises(JsonRpcInvalidParams, match="already being decided by another request"):
        await setup.approval.approve(bundle.id, None)
    with pytest.raises(JsonRpcInvalidParams, match="already being decided"):
        await setup.approval.reject(bundle.id, "no", "rejected")
    go_on.set()
    assert (await first).wire() == {"ledgerEntry": "c0ffee"}
    assert len(setup.decisions) == 1 and len(setup.client.edits) == 1


async def test_an_edit_the_editor_declines_releases_the_claim(tmp_path: Path) -> None:
    setup = Setup(tmp_path, RecordingClient(applied=False))
    try:
        bundle = setup.propose(approval_request())
        with pytest.raises(JsonRpcException, match=r"did not apply bundle b1 \(the user said no\)"):
            await setup.approval.approve(bundle.id, None)
        assert setup.decisions == []
        assert setup.bundles.claim(bundle.id) is bundle  # pending, and free to decide again
    finally:
        await setup.stop()


async def test_a_failed_commit_takes_back_what_the_editor_applied(setup: Setup) -> None:
    bundle = setup.propose(
        approval_request(changes={"a.py": b"A = 2\n"}, base={"a.py": b"A = 0\n"}),
        settle=Settlement(None, error="a hook failed"),
    )
    setup.host.ledger.files["a.py"] = b"A = 0\n"
    setup.editor.open(setup.root, "a.py", "A = 0\n")
    uri = (setup.root / "a.py").as_uri()

    async def the_editor_applies() -> None:
        setup.editor.texts[uri] = "A = 2\n"
        setup.editor.documents.changed(uri, 2, "A = 2\n")

    setup.client.while_applying = the_editor_applies
    with pytest.raises(JsonRpcException, match="a hook failed; Keel proposes it again; Keel rev"):
        await setup.approval.approve(bundle.id, None)
    applied, reverted = setup.client.edits
    assert reverted.label == "Keel: revert Add A (not committed)"
    assert "A = 0" in str(reverted.edit) and "A = 2" in str(applied.edit)


async def test_a_session_that_stops_while_the_editor_applies_commits_nothing(
    setup: Setup,
) -> None:
    bundle = setup.propose(approval_request())

    async def the_session_stops() -> None:
        setup.runs["s-1"].cancel()
        bundle.decision.cancel()
        setup.bundles.retire(bundle)

    setup.client.while_applying = the_session_stops
    with pytest.raises(JsonRpcException, match="withdrawn while the editor applied it"):
        await setup.approval.approve(bundle.id, None)
    assert setup.decisions == []
    with pytest.raises(JsonRpcInvalidParams, match="withdrawn: its session stopped"):
        setup.bundles.claim(bundle.id)


async def test_an_unknown_bundle_is_invalid(setup: Setup) -> None:
    with pytest.raises(JsonRpcInvalidParams, match="no pending bundle nope"):
        await setup.approval.approve("nope", None)


async def test_a_correction_carries_the_editors_diagnostics_of_the_proposal(setup: Setup) -> None:
    bundle = setup.propose(approval_request())
    residual = Residual(Component.SYN, "error: B is not defined", "Pylance", 1.0, path="a.py")
    report = EditorReport("a.py", "file:///a.py", digest(b"A = 1\n"), (), (residual,), 1)
    setup.editor.diagnostics.put(report)
    await setup.approval.reject(bundle.id, "define B", "correcting")
    await setup.decided.wait()
    feedback = setup.decisions[0].feedback
    assert feedback.startswith("define B\n\nThe editor's language servers report")
    assert "B is not defined" in feedback


# -- hunks ------------------------------------------------------------------------------------

HUNK_BASE = b"a = 1\nb = 2\nc = 3\n"
HUNK_AFTER = b"A = 1\nb = 2\nc = 3\nd = 4\n"


def hunk_request() -> ApprovalRequest:
    return approval_request(changes={"a.py": HUNK_AFTER}, base={"a.py": HUNK_BASE})


def hunk_ids(request: ApprovalRequest) -> list[str]:
    from keel.bundles.hunks import bundle_hunks

    return [h.id for h in bundle_hunks(request.changes, request.base)]


async def test_approving_a_hunk_applies_only_it_in_the_editor_and_names_it(setup: Setup) -> None:
    request = hunk_request()
    first, _second = hunk_ids(request)
    bundle = setup.propose(request)
    setup.host.ledger.files["a.py"] = HUNK_BASE
    setup.editor.open(setup.root, "a.py", HUNK_BASE.decode())
    answer = await setup.approval.approve(bundle.id, None, [first])
    assert answer.wire() == {"ledgerEntry": "c0ffee"}
    [decision] = setup.decisions
    assert decision.approved and decision.hunks == [first] and decision.files is None
    [edit] = setup.client.edits
    shown = str(edit.edit)
    assert "A = 1" in shown and "d = 4" not in shown  # the chosen hunk alone


async def test_unknown_hunk_ids_are_invalid_name_the_known_ones_and_change_nothing(
    setup: Setup,
) -> None:
    request = hunk_request()
    first, second = hunk_ids(request)
    bundle = setup.propose(request)
    with pytest.raises(JsonRpcInvalidParams, match=f"no hunk nope in bundle b1.*{first}.*{second}"):
        await setup.approval.approve(bundle.id, None, ["nope"])
    with pytest.raises(JsonRpcInvalidParams, match="no hunk nope"):
        await setup.approval.reject(bundle.id, "x", "rejected", hunks=[first, "nope"])
    assert setup.decisions == [] and setup.client.edits == []
    assert setup.bundles.claim(bundle.id) is bundle


async def test_hunks_unstable_alone_fail_take_back_the_edit_and_answer_once_pending_again(
    setup: Setup,
) -> None:
    request = hunk_request()
    first, _ = hunk_ids(request)
    bundle = setup.propose(request, settle=Settlement(None, error="hunks x alone are not stable"))
    setup.host.ledger.files["a.py"] = HUNK_BASE
    setup.editor.open(setup.root, "a.py", HUNK_BASE.decode())
    uri = (setup.root / "a.py").as_uri()

    async def the_editor_applies() -> None:
        text = "A = 1\nb = 2\nc = 3\n"
        setup.editor.texts[uri] = text
        setup.editor.documents.changed(uri, 2, text)

    setup.client.while_applying = the_editor_applies
    approving = asyncio.ensure_future(setup.approval.approve(bundle.id, None, [first]))
    await setup.decided.wait()
    again = setup.bundles.propose("s-1", request)  # the engine asks about it again
    with pytest.raises(JsonRpcException, match="alone are not stable; nothing was committed"):
        await approving
    assert again.id == bundle.id and setup.bundles.is_pending(again)
    applied, reverted = setup.client.edits
    assert "new_text='A = 1\\n'" in str(applied.edit)
    assert "new_text='a = 1\\n'" in str(reverted.edit)
    assert reverted.label.startswith("Keel: revert")


async def test_rejecting_hunks_hands_their_ids_and_the_reason_to_the_engine(setup: Setup) -> None:
    request = hunk_request()
    _, second = hunk_ids(request)
    bundle = setup.propose(request)
    answer = await setup.approval.reject(bundle.id, "no d", "rejected", hunks=[second])
    assert answer.wire() == {"bundleId": bundle.id, "decision": "rejected"}
    await setup.decided.wait()
    [decision] = setup.decisions
    assert not decision.approved and decision.hunks == [second] and decision.feedback == "no d"
