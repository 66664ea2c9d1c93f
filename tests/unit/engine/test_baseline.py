"""The baseline: residuals already present at HEAD are shown but weigh nothing; new or changed
ones count; matching is per copy, ignores lines and sandbox paths, and never hides a
degraded sensor."""

from __future__ import annotations

from keel.engine.baseline import Baseline, BaselineRecord
from keel.engine.energy import energy_from_record, measure, rescore
from keel.engine.models import Component, EnergyWeights, Residual, SensorReport
from keel.engine.replies import PlanNode, TaskPlan
from keel.engine.session import responsible_nodes
from keel.engine.verifier import evidence_dicts

HEAD = "0123456789abcdef0123456789abcdef01234567"
WEIGHTS = EnergyWeights()


def failing(test_id: str, message: str = "assert 1 == 2", line: int = 3) -> Residual:
    path = test_id.split("::")[0]
    return Residual(Component.LOG, message, "pytest", path=path, line=line, test_id=test_id)


def diagnostic(path: str, message: str, line: int) -> Residual:
    return Residual(Component.SYN, message, "ty", path=path, line=line)


OLD = failing("tests/test_old.py::test_broken")
BASELINE = Baseline(HEAD, (OLD, diagnostic("app.py", "error[x] bad", 4)))


def test_a_failure_present_at_baseline_is_evidence_but_not_energy() -> None:
    [report] = BASELINE.mark([SensorReport("python.tests", (OLD,))])
    energy = measure([report], WEIGHTS)
    assert energy.total == 0 and energy.stable(0.1)
    [kept] = energy.evidence
    assert kept.baseline == HEAD
    assert kept.describe().endswith("(already failing at 0123456789ab)")
    assert evidence_dicts(energy.evidence)[0]["baseline"] is True
    assert evidence_dicts(energy.evidence)[0]["baseline_at"] == HEAD


def test_new_and_changed_failures_count() -> None:
    new = failing("tests/test_new.py::test_x")
    changed = failing("tests/test_old.py::test_broken", "assert 3 == 4")
    [report] = BASELINE.mark([SensorReport("python.tests", (new, changed))])
    assert [r.baseline for r in report.residuals] == [None, None]
    assert measure([report], WEIGHTS).components[Component.LOG] == 2 * 2.0


def test_one_baseline_copy_excuses_one_residual() -> None:
    twice = (diagnostic("app.py", "error[x] bad", 4), diagnostic("app.py", "error[x] bad", 9))
    [report] = BASELINE.mark([SensorReport("python.check", twice)])
    assert [r.baseline is not None for r in report.residuals] == [True, False]
    assert measure([report], WEIGHTS).components[Component.SYN] == 1.0


def test_a_moved_line_and_another_sandbox_path_still_match() -> None:
    at_head = failing(
        "tests/t.py::test_f",
        "FileNotFoundError: /w/.keel/sandboxes/s-1/baseline/data.txt at 0x7f00aa",
    )
    in_node = failing(
        "tests/t.py::test_f",
        "FileNotFoundError: /w/.keel/sandboxes/s-1/node-2/3/data.txt at 0x7f11bb",
        line=30,
    )
    [report] = Baseline(HEAD, (at_head,)).mark([SensorReport("python.tests", (in_node,))])
    assert report.residuals[0].baseline == HEAD


def test_a_degraded_report_is_never_excused() -> None:
    missing = Residual(Component.BOOT, "pytest is not installed for x", "python.tests")
    degraded = SensorReport("python.tests", (missing,), degraded=True)
    [report] = Baseline(HEAD, (missing,)).mark([degraded])
    energy = measure([report], WEIGHTS)
    assert report.residuals[0].baseline is None
    assert not energy.stable(0.1) and energy.degraded_sensors == ("python.tests",)


def test_the_sheaf_component_matches_a_baseline_test_too() -> None:
    sheaf = Residual(
        Component.SHEAF, OLD.message, "pytest", path=OLD.path, line=OLD.line, test_id=OLD.test_id
    )
    [report] = BASELINE.mark([SensorReport("python.tests", (sheaf,))])
    assert report.residuals[0].baseline == HEAD


def test_recorded_evidence_keeps_the_mark_and_rescoring_ignores_it() -> None:
    [report] = BASELINE.mark([SensorReport("python.tests", (OLD,))])
    recorded = evidence_dicts(measure([report], WEIGHTS).evidence)
    energy = energy_from_record({"v_log": 0.0}, recorded)
    assert energy.evidence[0].baseline == HEAD
    legacy = energy_from_record({}, [{**recorded[0], "baseline_at": None}])
    assert legacy.evidence[0].baseline == "HEAD"
    old_syn = Baseline(HEAD, (diagnostic("app.py", "error[x] bad", 4),))
    [syn] = old_syn.mark([SensorReport("ed", (diagnostic("app.py", "error[x] bad", 5),))])
    rescored = rescore(measure([], WEIGHTS), WEIGHTS, {"app.py": syn})
    assert rescored.components[Component.SYN] == 0 and len(rescored.evidence) == 1


def test_reopening_ignores_tests_that_failed_at_baseline() -> None:
    plan = TaskPlan(
        nodes=[
            PlanNode(id="n1", title="code", kind="code", owns=["app.py"]),
            PlanNode(id="n2", title="tests", kind="unit_test", owns=["tests/test_old.py"]),
        ]
    )
    [report] = BASELINE.mark([SensorReport("python.tests", (OLD,))])
    assert responsible_nodes(plan, measure([report], WEIGHTS)) == []
    assert [
        n.id for n in responsible_nodes(plan, measure([SensorReport("t", (OLD,))], WEIGHTS))
    ] == ["n2"]


def test_the_record_round_trips_and_rebuilds_the_baseline() -> None:
    record = BaselineRecord.empty()
    record.tests = evidence_dicts([OLD])
    record.checked = {"app.py": evidence_dicts([diagnostic("app.py", "error[x] bad", 4)])}
    record.tested = True
    loaded = BaselineRecord.load(record.dump())
    assert loaded is not None and loaded.tested and set(loaded.checked) == {"app.py"}
    baseline = loaded.baseline(HEAD, reused=True)
    assert baseline.reused and {r.test_id for r in baseline.residuals} == {OLD.test_id, None}
    assert BaselineRecord.load(None) is None
    assert BaselineRecord.load({"checked": "nonsense"}) == BaselineRecord([], [], {}, [], False)


def test_durations_and_the_scope_of_an_empty_collection_do_not_matter() -> None:
    def pytest_says(message: str) -> Residual:
        return Residual(Component.LOG, message, "pytest", exit_code=1)

    at_head = (
        pytest_says("pytest exited 1 without a failing test: 1 error in 0.05s"),
        pytest_says("no tests collected in the workspace"),
    )
    now = (
        pytest_says("pytest exited 1 without a failing test: 1 error in 12.5s"),
        pytest_says("no tests collected in tests/test_a.py, tests/test_b.py"),
        pytest_says("pytest exited 1 without a failing test: 2 errors in 0.05s"),
    )
    [report] = Baseline(HEAD, at_head).mark([SensorReport("python.tests", now)])
    assert [r.baseline is not None for r in report.residuals] == [True, True, False]
