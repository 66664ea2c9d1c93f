"""What `keel agent` prints (without --json) for each event."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TypeVar

import pytest

from keel.cli import JsonSink, describe_event
from keel.engine import events as ev
from tests.unit.event_samples import HEAD, OLD, SAMPLES, STARTED

E = TypeVar("E", bound=ev.Event)


def _sample(cls: type[E]) -> E:
    return next(e for e in SAMPLES if isinstance(e, cls) and type(e) is cls)


def test_session_started_names_the_projects_interpreter() -> None:
    event = replace(
        STARTED,
        session="s-1",
        environment={
            "python": {"interpreter": "/p/.venv/bin/python", "source": ".venv", "pytest": False}
        },
    )
    text = describe_event(event) or ""
    assert text.startswith("[session] s-1: add divide\n[models] architect=openai:m")
    assert text.endswith("[python] /p/.venv/bin/python (.venv); pytest NOT installed there")
    assert "[python]" not in (describe_event(replace(event, environment={})) or "")


def test_baseline_and_verification_lines_say_already_failing() -> None:
    baseline = replace(_sample(ev.BaselineEvent), reused=True)
    assert describe_event(baseline) == (
        "[baseline] 5b1161cb2048: 1 already failing (tests/test_legacy.py::test_legacy) (reused)"
    )
    assert describe_event(replace(baseline, head=None, evidence=[])) == (
        "[baseline] no commit yet: nothing to compare with"
    )
    verification = replace(
        _sample(ev.Verification),
        evidence=[OLD, {**OLD, "baseline": None, "test_id": "tests/t.py::test_new"}],
    )
    lines = (describe_event(verification) or "").splitlines()
    assert lines[0] == (
        "[node-1] V(x)=3.000 [syn=0.00 str=0.00 log=2.00 boot=1.00 sheaf=0.00] eps=0.1 -> unstable"
    )
    assert lines[1].endswith(f"known broken (already failing at {HEAD[:12]})")
    assert lines[2].endswith("known broken")
    assert lines[3] == "    degraded sensors: ty"


@pytest.mark.parametrize(
    ("cls", "line"),
    [
        (ev.NodeCommitted, "[node-1] committed eeeeeeeeeeee"),
        (ev.NodeFailed, "[node-2] node-1 did not commit"),
        (ev.PlanFailed, "[plan_failed] no valid plan after 3 attempts"),
        (ev.WarningEvent, "[warning] speculator unavailable: timeout"),
        (ev.BudgetExceededEvent, "[budget] the cost budget is spent"),
        (ev.AwaitingApproval, "[node-1] awaiting approval (complexity 3)"),
        (ev.HunksVerified, "[node-1] hunks 3f9a1c0b7d2e alone: V(x)=1.500, NOT stable"),
        (
            ev.BundlePartiallyCommitted,
            "[node-1] committed ffffffffffff (calc.py); the rest is verified again",
        ),
        (ev.HunksRejected, "[node-1] rejected hunks 3f9a1c0b7d2e; 1 left"),
        (
            ev.SessionFinished,
            "[done] partial (not committed: node-2 (failed)): 1/2 nodes committed, 4 model "
            "calls, 900+80 tokens, $0.2500 (1 call unpriced), 12.5s",
        ),
        (ev.SessionResumed, None),
        (ev.BundleRebased, None),
    ],
)
def test_each_kind_has_its_line(cls: type[ev.Event], line: str | None) -> None:
    assert describe_event(_sample(cls)) == line


def test_json_sink_prints_the_wire_object(capsys: pytest.CaptureFixture[str]) -> None:
    event = _sample(ev.NodeCommitted).stamped("2026-11-22T10:15:00.101Z", "s-1")
    JsonSink().emit(event)
    line = capsys.readouterr().out
    assert line.endswith("\n") and line.count("\n") == 1
    assert list(json.loads(line)) == [
        "ts",
        "session",
        "type",
        "node",
        "ledger",
        "files",
        "v",
        "recovered",
    ]
