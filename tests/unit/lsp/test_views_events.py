"""A session's view in the editor, folded from the engine's event records."""

from __future__ import annotations

from dataclasses import replace

from keel.engine import events as ev
from keel.lsp.views import SessionView
from tests.unit.event_samples import SAMPLES, STARTED


def _of(cls: type[ev.Event]) -> ev.Event:
    return next(e for e in SAMPLES if type(e) is cls)


def test_a_node_moves_through_its_states_with_the_events() -> None:
    view = SessionView("s-1")
    view.apply(STARTED)
    assert view.running and view.task == "add divide" and view.mode == "balanced"
    view.apply(_of(ev.PlanReady))
    node = view.nodes["node-1"]
    assert (node.title, node.kind, node.owns, node.state) == ("calc", "code", ["calc.py"], "queued")
    seen = []
    for cls in (ev.NodeStarted, ev.BundleGenerated, ev.NodeRetrying, ev.AwaitingApproval):
        view.apply(_of(cls))
        seen.append(node.state)
    assert seen == ["running", "verifying", "retrying", "awaiting_approval"]
    view.apply(_of(ev.BundlePartiallyCommitted))
    assert node.ledger == "f" * 40 and node.state == "awaiting_approval"
    view.apply(_of(ev.NodeCommitted))
    assert node.ledger == "e" * 40 and node.state == "committed"


def test_verifications_set_a_nodes_energy_or_the_sheaf() -> None:
    view = SessionView("s-1")
    node_check, sheaf_check = (e for e in SAMPLES if isinstance(e, ev.Verification))
    view.apply(replace(node_check, attempt=3))
    node = view.nodes["node-1"]
    assert node.attempts == 3 and node.energy is not None and node.energy.total == 3.0
    assert [r.test_id for r in node.energy.evidence] == ["tests/test_legacy.py::test_legacy"]
    view.apply(sheaf_check)
    assert view.sheaf is not None and view.sheaf.total == 3.0
    assert set(view.nodes) == {"node-1"}


def test_stops_keep_their_reason_and_the_end_sets_every_state() -> None:
    view = SessionView("s-1")
    view.apply(_of(ev.NodeFailed))
    assert (view.nodes["node-2"].state, view.nodes["node-2"].reason) == (
        "failed",
        "node-1 did not commit",
    )
    view.apply(_of(ev.BundleRejected))  # known node, no state of its own
    assert view.nodes["node-1"].state == "queued"
    view.apply(_of(ev.NodesReopened))  # session-wide: no node of its own
    view.apply(_of(ev.SessionFinished))
    assert not view.running and view.outcome == "partial"
    assert {n.id: n.state for n in view.nodes.values()} == {
        "node-2": "failed",
        "node-1": "committed",
    }
