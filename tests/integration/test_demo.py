"""Must-show 1 and 2: the README's demo through the real CLI, and its correction."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from keel.engine.events import parse_event
from tests.integration.conftest import git, json_events, run_keel

TRAILERS = ("Keel-Session", "Keel-Node", "Keel-Bundle", "Keel-Energy", "Keel-Approved-By")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, object]], int]:
    workspace = tmp_path_factory.mktemp("demo") / "keel-demo"
    proc = run_keel("demo", "-w", str(workspace), "--json")
    assert proc.stderr == "" or "Traceback" not in proc.stderr, proc.stderr
    return workspace, json_events(proc.stdout), proc.returncode


def test_demo_succeeds_and_its_tests_pass(demo: tuple[Path, list[dict[str, object]], int]) -> None:
    workspace, events, status = demo
    assert status == 0, events[-1]
    assert events[-1]["type"] == "session_finished" and events[-1]["outcome"] == "success"
    pytest_run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=workspace,
        capture_output=True,
        text=True,
        check=False,
    )
    assert pytest_run.returncode == 0, pytest_run.stdout
    assert "7 passed" in pytest_run.stdout


def test_demo_has_one_ledger_commit_per_node_with_trailers(
    demo: tuple[Path, list[dict[str, object]], int],
) -> None:
    workspace, events, _ = demo
    plan = next(e for e in events if e["type"] == "plan_ready")
    node_ids = {n["id"] for n in plan["nodes"]}  # type: ignore[index]
    shas = git(workspace, "log", "--format=%H").split()
    assert len(shas) == len(node_ids) == 4
    seen = set()
    for sha in shas:
        trailers = git(workspace, "log", "-1", "--format=%(trailers:only,unfold)", sha)
        for key in TRAILERS:
            assert f"{key}: " in trailers, (sha, trailers)
        seen.add(
            next(
                line.split(": ")[1]
                for line in trailers.splitlines()
                if line.startswith("Keel-Node")
            )
        )
    assert seen == node_ids
    listed = json.loads(run_keel("ledger", "--recent", "--json", "-w", str(workspace)).stdout)
    assert [e["sha"] for e in listed] == shas
    assert git(workspace, "status", "--porcelain") == ""


def test_demo_corrects_the_failing_test(demo: tuple[Path, list[dict[str, object]], int]) -> None:
    _, events, _ = demo
    checks = [e for e in events if e["type"] == "verification" and e["node"] == "node-4"]
    assert [e["attempt"] for e in checks] == [1, 2]
    first, second = checks
    assert first["v"] >= first["epsilon"] and not first["stable"]
    failing = [e for e in first["evidence"] if e.get("source") == "pytest"]  # type: ignore[union-attr]
    assert [e["test_id"] for e in failing] == ["tests/test_calculator.py::test_divide"]
    assert second["v"] < second["epsilon"] and second["stable"]
    sheaf = [e for e in events if e["type"] == "verification" and e.get("stage") == "sheaf"]
    assert sheaf and sheaf[0]["stable"]


def test_the_demo_runs_where_no_sandbox_can_be_made_and_says_so(tmp_path: Path) -> None:
    """The README's first command must work on a fresh machine without bubblewrap: the demo's
    code is Keel's own recorded transcript, so it runs unconfined and says why; ``keel agent``
    on the same machine still refuses to run model code."""
    tools = tmp_path / "bin"  # git and a shell, but no bwrap
    tools.mkdir()
    for name in ("git", "sh"):
        found = shutil.which(name)
        assert found is not None
        (tools / name).symlink_to(found)
    env = {"PATH": str(tools), "HOME": str(tmp_path / "home")}
    workspace = tmp_path / "keel-demo"
    proc = run_keel("demo", "-w", str(workspace), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "bwrap not found" in proc.stderr and "runs unconfined here" in proc.stderr
    events = json_events(proc.stdout)
    assert events[0]["sandbox"]["mode"] == "off"
    assert events[-1]["outcome"] == "success"
    refused = run_keel("agent", "-w", str(tmp_path / "other"), "task", env=env)
    assert refused.returncode != 0 and "bwrap not found" in refused.stderr


def test_every_printed_event_is_a_record_and_the_store_keeps_the_same_objects(
    demo: tuple[Path, list[dict[str, object]], int],
) -> None:
    """``--json`` prints each record's JSON object unchanged, and the store keeps the same."""
    workspace, events, _ = demo
    for event in events:
        assert json.dumps(parse_event(event).to_json()) == json.dumps(event)
    with closing(sqlite3.connect(workspace / ".keel" / "keel.db")) as db:
        rows = db.execute("SELECT payload FROM events ORDER BY id").fetchall()
    stored = [json.loads(payload) for (payload,) in rows]
    assert stored == [e for e in events if e["type"] != "plan_invalid"]
