"""What `keel agent` prints (without --json) for the environment and the baseline."""

from __future__ import annotations

from keel.cli import describe_event

HEAD = "5b1161cb2048e0c1d2a3b4c5d6e7f8091a2b3c4d"
OLD = {
    "component": "log",
    "source": "pytest",
    "test_id": "tests/test_legacy.py::test_legacy",
    "message": "AssertionError: known broken",
    "baseline": True,
    "baseline_at": HEAD,
}


def test_session_started_names_the_projects_interpreter() -> None:
    event = {
        "type": "session_started",
        "session": "s-1",
        "task": "t",
        "models": {"actuator": "m"},
        "environment": {
            "python": {"interpreter": "/p/.venv/bin/python", "source": ".venv", "pytest": False}
        },
    }
    text = describe_event(event) or ""
    assert text.endswith("[python] /p/.venv/bin/python (.venv); pytest NOT installed there")
    assert "[python]" not in (describe_event({**event, "environment": {}}) or "")


def test_baseline_and_verification_lines_say_already_failing() -> None:
    baseline = {"type": "baseline", "head": HEAD, "reused": True, "evidence": [OLD]}
    assert describe_event(baseline) == (
        "[baseline] 5b1161cb2048: 1 already failing (tests/test_legacy.py::test_legacy) (reused)"
    )
    assert describe_event({"type": "baseline", "head": None, "evidence": []}) == (
        "[baseline] no commit yet: nothing to compare with"
    )
    verification = {
        "type": "verification",
        "node": "node-1",
        "v": 0.0,
        "epsilon": 0.1,
        "stable": True,
        "evidence": [OLD, {**OLD, "baseline": None, "test_id": "tests/t.py::test_new"}],
    }
    lines = (describe_event(verification) or "").splitlines()
    assert lines[1].endswith("known broken (already failing at 5b1161cb2048)")
    assert lines[2].endswith("known broken")
