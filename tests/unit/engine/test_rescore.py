"""engine.energy.rescore: the editor's diagnostics replace the checker's V_syn per file."""

from __future__ import annotations

from keel.engine.energy import energy_from_record, measure, rescore
from keel.engine.models import Component, EnergyWeights, Residual, SensorReport
from keel.engine.verifier import evidence_dicts


def syn(path: str, magnitude: float = 1.0) -> Residual:
    return Residual(Component.SYN, "error: x", "ty", magnitude, path=path, line=1)


def test_rescore_replaces_only_the_named_files() -> None:
    weights = EnergyWeights()
    checker = SensorReport("check", (syn("a.py"), syn("b.py"), syn("b.py", 0.3)))
    contract = SensorReport("contract", (Residual(Component.STR, "missing add", "contract"),))
    energy = measure([checker, contract], weights)
    assert energy.components[Component.SYN] == 2.09
    editor = {"b.py": SensorReport("editor", ()), "c.py": SensorReport("editor", (syn("c.py"),))}
    again = rescore(energy, weights, editor)
    assert again.components[Component.SYN] == 2.0  # a.py stands, b.py cleared, c.py added
    assert again.components[Component.STR] == energy.components[Component.STR]
    assert sorted(r.path or "" for r in again.evidence if r.component is Component.SYN) == [
        "a.py",
        "c.py",
    ]
    assert rescore(energy, weights, {}) is energy


def test_energy_round_trips_through_its_record() -> None:
    energy = measure(
        [SensorReport("check", (syn("a.py", 0.3),)), SensorReport("t", degraded=True)],
        EnergyWeights(),
    )
    back = energy_from_record(energy.as_dict(), evidence_dicts(energy.evidence), ["t"])
    assert back.as_dict() == energy.as_dict() and back.evidence == energy.evidence
    assert not back.stable(1.0)
