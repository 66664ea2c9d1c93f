"""The baseline: what was already wrong at HEAD before the session touched anything.

Before the first node, the workspace at HEAD is measured with the same sensors that judge the
nodes: the whole test suite, the plugins' build checks, and the checker over the files the
plan touches. A residual a node's verification finds again (same sensor, same test or file,
same message) is marked ``baseline`` and weighs nothing: a test that already failed does not
block every node. A new failure, or the same test failing differently, counts as always.

Residuals are matched as a multiset, so a second copy of a pre-existing diagnostic counts.
Messages are compared after removing what changes between two runs of the same failure:
sandbox paths, memory addresses, durations and pytest's numbered temporary directories. A degraded
sensor is never matched: missing evidence stays missing evidence.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from keel.engine.energy import residual_from_record
from keel.engine.models import Residual, SensorReport

_SANDBOX = re.compile(r"\S*?\.keel/sandboxes/[^/\s]+/(?:sheaf|baseline|[^/\s]+/\d+)/")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
_PYTEST_TMP = re.compile(r"pytest-\d+")
_DURATION = re.compile(r"\bin \d+(?:\.\d+)?s\b")
_NOT_COLLECTED = "no tests collected in "

#: The step id under which a session records the commit of its baseline (resume reuses it).
STEP_ID = "baseline"

Key = tuple[str, str, str, str]


def _normalise(message: str) -> str:
    if message.startswith(_NOT_COLLECTED):  # "in the workspace" at HEAD, a file list in a node
        return _NOT_COLLECTED.strip()
    text = _SANDBOX.sub("<tree>/", message)
    text = _ADDRESS.sub("0x?", text)
    text = _DURATION.sub("in ?s", text)
    return _PYTEST_TMP.sub("pytest-?", text)


def residual_key(residual: Residual) -> Key:
    """What makes two residuals "the same failure": sensor, test (or file), message.

    The line is left out (an edit above a diagnostic moves it); the component too (a test
    failing at baseline counts as V_log in a node and as V_sheaf in the final check).
    """
    where = residual.test_id or residual.path or ""
    return (residual.source, where, residual.command or "", _normalise(residual.message))


@dataclass(frozen=True)
class Baseline:
    """The residuals present at commit ``head``; ``degraded`` sensors could not measure."""

    head: str
    residuals: tuple[Residual, ...] = ()
    degraded: tuple[str, ...] = ()
    reused: bool = False

    def mark(self, reports: Iterable[SensorReport]) -> list[SensorReport]:
        """``reports`` with each residual present at baseline marked (and so not counted)."""
        pool: Counter[Key] = Counter(residual_key(r) for r in self.residuals)
        out = []
        for report in reports:
            if report.degraded or not report.residuals:
                out.append(report)
                continue
            marked = []
            for residual in report.residuals:
                key = residual_key(residual)
                if pool[key] > 0:
                    pool[key] -= 1
                    residual = replace(residual, baseline=self.head)
                marked.append(residual)
            out.append(replace(report, residuals=tuple(marked)))
        return out


def mark(reports: Sequence[SensorReport], baseline: Baseline | None) -> list[SensorReport]:
    """:meth:`Baseline.mark`, or ``reports`` unchanged without a baseline."""
    return list(reports) if baseline is None else baseline.mark(reports)


@dataclass
class BaselineRecord:
    """The stored form: test and build residuals, and the checker's per file checked.

    ``checked`` maps every file the checker was asked about to its residuals, so a later
    session at the same commit measures only the files it adds.
    """

    tests: list[dict[str, Any]]
    boot: list[dict[str, Any]]
    checked: dict[str, list[dict[str, Any]]]
    degraded: list[str]
    tested: bool

    @classmethod
    def empty(cls) -> BaselineRecord:
        return cls([], [], {}, [], False)

    @classmethod
    def load(cls, data: Mapping[str, Any] | None) -> BaselineRecord | None:
        if not isinstance(data, Mapping):
            return None
        checked = data.get("checked")
        return cls(
            tests=[dict(item) for item in data.get("tests") or []],
            boot=[dict(item) for item in data.get("boot") or []],
            checked={
                str(path): [dict(item) for item in items]
                for path, items in (checked.items() if isinstance(checked, Mapping) else [])
            },
            degraded=[str(name) for name in data.get("degraded") or []],
            tested=bool(data.get("tested")),
        )

    def dump(self) -> dict[str, Any]:
        return {
            "tests": self.tests,
            "boot": self.boot,
            "checked": self.checked,
            "degraded": self.degraded,
            "tested": self.tested,
        }

    def baseline(self, head: str, *, reused: bool) -> Baseline:
        items = [*self.tests, *self.boot, *(i for items in self.checked.values() for i in items)]
        residuals = tuple(residual_from_record(item) for item in items)
        return Baseline(head, residuals, tuple(dict.fromkeys(self.degraded)), reused)


__all__ = ["STEP_ID", "Baseline", "BaselineRecord", "mark", "residual_key"]
