"""A stored session's view (``keel.lsp.views.hydrate``), built from the store's records: what
the editor shows for a session an earlier server or ``keel agent`` ran."""

from __future__ import annotations

from keel.engine import defaults
from keel.engine.models import EnergyWeights
from keel.engine.records import AttemptRecord, NodeRecord, PlanRecord, SessionRecord
from keel.lsp.views import hydrate

PLAN = PlanRecord(
    1,
    {
        "nodes": [
            {"id": "n1", "title": "write calc", "kind": "code", "owns": ["calc.py"]},
            {"id": "n2", "title": "test calc", "kind": "unit_test", "owns": ["test_calc.py"]},
        ]
    },
    "t",
)
ENERGY = {"v_syn": 0.0, "v_str": 0.0, "v_log": 0.5, "v_boot": 0.0, "v_sheaf": 0.0, "v": 1.0}


def session(config: dict[str, object]) -> SessionRecord:
    return SessionRecord("s1", "add numbers", config, "t", "t2", "partial", {"reason": "r"})


def test_a_stored_session_becomes_its_view() -> None:
    config = {"mode": "cautious", "epsilon": 0.25, "weights": [2.0, 0.5, 1.0, 1.0, 1.0]}
    nodes = [NodeRecord("n1", "write calc", "code", "committed", "t")]
    nodes.append(NodeRecord("n2", "", "unit_test", "escalated", "t"))
    attempts = [
        AttemptRecord("n2", 1, None, ENERGY, [{"component": "log", "message": "x"}], False),
        AttemptRecord("n2", 2, None, ENERGY, [], False),
    ]
    view = hydrate(session(config), PLAN, nodes, attempts)
    assert (view.id, view.task, view.mode, view.outcome) == (
        "s1",
        "add numbers",
        "cautious",
        "partial",
    )
    assert view.epsilon == 0.25 and view.weights == EnergyWeights(syn=2.0, log=1.0)
    assert [(n.id, n.title, n.state, n.owns) for n in view.nodes.values()] == [
        ("n1", "write calc", "committed", ["calc.py"]),
        ("n2", "test calc", "escalated", ["test_calc.py"]),
    ]
    assert view.nodes["n2"].attempts == 2 and view.nodes["n2"].energy is not None
    assert view.nodes["n1"].energy is None and not view.running


def test_an_old_or_damaged_configuration_falls_back_to_the_defaults() -> None:
    view = hydrate(session({}), None, [], [])
    assert (view.epsilon, view.weights, view.mode) == (defaults.EPSILON, EnergyWeights(), "")
    assert view.nodes == {}
    damaged = hydrate(session({"weights": ["heavy", None]}), None, [], [])
    assert damaged.weights == EnergyWeights()
    for epsilon in (None, "small", [0.1]):
        assert hydrate(session({"epsilon": epsilon}), None, [], []).epsilon == defaults.EPSILON
