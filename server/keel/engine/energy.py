"""V(x): the pure function from sensor reports to energy.

Each component is its weight times the sum of its residuals' squared magnitudes:
``V_c = w_c * sum(r_i ** 2)`` and ``V = V_syn + V_str + V_log + V_boot + V_sheaf``.
A residual of magnitude 1 (an error diagnostic, a failing test, a failed command, a violated
contract item) is worth at least ``min(weights)`` = 0.5 with the default weights, above the
default epsilon of 0.1; a warning (0.3) alone is worth 0.09 and does not block. A degraded
sensor also blocks stability outright: missing evidence is never a pass. A residual already
present at the baseline (``Residual.baseline``) is kept as evidence but weighs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from keel.engine.models import Component, Energy, EnergyWeights, Residual, SensorReport


def measure(reports: Iterable[SensorReport], weights: EnergyWeights) -> Energy:
    """Combine sensor reports into one :class:`Energy`."""
    sums = dict.fromkeys(Component, 0.0)
    evidence: list[Residual] = []
    degraded: list[str] = []
    for report in reports:
        if report.degraded:
            degraded.append(report.sensor)
        for residual in report.residuals:
            if residual.baseline is None:
                sums[residual.component] += residual.magnitude**2
            evidence.append(residual)
    components = {c: weights.of(c) * total for c, total in sums.items()}
    return Energy(components=components, evidence=tuple(evidence), degraded_sensors=tuple(degraded))


def rescore(
    energy: Energy, weights: EnergyWeights, syn_reports: Mapping[str, SensorReport]
) -> Energy:
    """``energy`` with V_syn re-measured from other diagnostics for some files.

    In the editor, the diagnostics the editor's own language servers report for a file
    (``syn_reports``, keyed by workspace-relative path) replace the checker's V_syn evidence
    for that file; every other residual and component stands as measured.
    """
    if not syn_reports:
        return energy
    kept = [
        r for r in energy.evidence if r.component is not Component.SYN or r.path not in syn_reports
    ]
    added = [
        replace(r, component=Component.SYN, path=r.path or path)
        for path, report in syn_reports.items()
        for r in report.residuals
    ]
    evidence = (*kept, *added)
    syn = weights.of(Component.SYN) * sum(
        r.magnitude**2 for r in evidence if r.component is Component.SYN and r.baseline is None
    )
    return replace(energy, components={**energy.components, Component.SYN: syn}, evidence=evidence)


def energy_from_record(
    components: Mapping[str, Any],
    evidence: Iterable[Mapping[str, Any]],
    degraded: Iterable[str] = (),
) -> Energy:
    """An :class:`Energy` back from its recorded form (``as_dict`` and evidence dicts)."""
    values = {c: float(components.get(f"v_{c.value}", 0.0) or 0.0) for c in Component}
    return Energy(
        components=values,
        evidence=tuple(residual_from_record(item) for item in evidence),
        degraded_sensors=tuple(degraded),
    )


def residual_from_record(item: Mapping[str, Any]) -> Residual:
    """The inverse of the verifier's evidence dicts; unknown keys are ignored."""
    line, exit_code = item.get("line"), item.get("exit_code")
    return Residual(
        component=Component(str(item.get("component", Component.BOOT.value))),
        message=str(item.get("message", "")),
        source=str(item.get("source", "")),
        magnitude=float(item.get("magnitude", 1.0)),
        path=str(item["path"]) if item.get("path") is not None else None,
        line=int(line) if isinstance(line, int | float) else None,
        test_id=str(item["test_id"]) if item.get("test_id") is not None else None,
        command=str(item["command"]) if item.get("command") is not None else None,
        exit_code=int(exit_code) if isinstance(exit_code, int | float) else None,
        baseline=_baseline_of(item),
    )


def _baseline_of(item: Mapping[str, Any]) -> str | None:
    """``"baseline": true`` with its commit in ``baseline_at`` (``HEAD`` when missing)."""
    if not item.get("baseline"):
        return None
    return str(item.get("baseline_at") or "HEAD")


def parse_weights(text: str) -> EnergyWeights:
    """``"A,B,G[,D,S]"`` (the ``--energy-weights`` flag) to weights; omitted ones keep defaults."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError as exc:
        raise ValueError(f"energy weights must be numbers, got {text!r}") from exc
    return weights_from(values)


def weights_from(values: list[float]) -> EnergyWeights:
    """Weights from a list of 3 to 5 non-negative numbers in component order.

    Every configuration path (flag, ``keel.toml``, ``KEEL_ENERGY_WEIGHTS``, editor settings)
    ends here, so this is where nonsense is refused. One zero weight is a deliberate way to
    switch a component off; all five zero would make every bundle "stable" (V is always 0)
    and a session with failing tests would succeed, so that is an error.
    """
    if not 3 <= len(values) <= 5:
        raise ValueError(
            f"energy weights take 3 to 5 numbers (syn,str,log[,boot,sheaf]), got {len(values)}"
        )
    if any(value < 0 for value in values):
        raise ValueError("energy weights must not be negative")
    if not all(math.isfinite(value) for value in values):
        raise ValueError("energy weights must be finite numbers")
    defaults = EnergyWeights()
    names = [c.value for c in Component]
    merged = {name: getattr(defaults, name) for name in names}
    merged.update(zip(names, values, strict=False))
    if not any(merged.values()):
        raise ValueError(
            "energy weights must not all be zero: V(x) would always be 0 and every bundle, "
            "failing tests included, would count as stable"
        )
    return EnergyWeights(**merged)
