"""A repository with a test already failing before the session: it blocks no node.

The real ``keel agent`` with a replay transcript: a node that does not touch the failing
test commits at attempt 1; a node that breaks another test does not commit at that attempt;
the session ends ``success``. The baseline is measured once per HEAD and reused.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tests.integration.conftest import (
    bundle,
    git,
    json_events,
    node,
    plan,
    run_keel,
    write_transcript,
)

CALC = "def add(a: int, b: int) -> int:\n    return a + b\n"
BROKEN_CALC = "def add(a: int, b: int) -> int:\n    return a - b\n"
CALC_TESTS = "from calc import add\n\n\ndef test_add() -> None:\n    assert add(2, 3) == 5\n"
LEGACY = "def test_legacy() -> None:\n    assert 1 + 1 == 3, 'known broken'\n"
GREET = "def greet(name: str) -> str:\n    return f'hello {name}'\n"
LEGACY_ID = "tests/test_legacy.py::test_legacy"


def make_repository(root: Path) -> str:
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    for path, text in {
        "calc.py": CALC,
        "tests/test_calc.py": CALC_TESTS,
        "tests/test_legacy.py": LEGACY,
    }.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    git(root, "add", ".")
    git(root, "commit", "-qm", "a project with one known failure")
    return git(root, "rev-parse", "HEAD").strip()


def agent(tmp_path: Path, workspace: Path, entries: list[dict[str, Any]], *flags: str) -> Any:
    transcript = write_transcript(tmp_path / "t.jsonl", entries)
    proc = run_keel(
        "agent", "-y", "--json", "--model", f"replay:{transcript}", *flags,
        "-w", str(workspace), "Add greet and touch calc",
        env={"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "home" / "cfg")},
    )  # fmt: skip
    assert proc.stdout, proc.stderr
    return json_events(proc.stdout)


def session_entries() -> list[dict[str, Any]]:
    return [
        plan(
            node("node-1", ["greet.py"], symbols=["greet"], title="Greet"),
            node("node-2", ["calc.py"], symbols=["add"], title="Calc", depends_on=["node-1"]),
        ),
        {"tier": "speculator", "node": None, "attempt": 1, "reply": {"hints": []}},
        bundle("node-1", writes={"greet.py": GREET}),
        bundle("node-2", writes={"calc.py": BROKEN_CALC}),
        {
            "tier": "verifier",
            "node": "node-2",
            "attempt": 1,
            "reply": {"verdict": "unstable", "analysis": "add subtracts", "fix_hints": []},
        },
        bundle("node-2", 2, writes={"calc.py": CALC + "\n\n# checked\n"}),
    ]


def of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def legacy_items(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [ev for ev in event["evidence"] if ev.get("test_id") == LEGACY_ID]


def test_a_test_failing_before_the_session_blocks_no_node(tmp_path: Path) -> None:
    head = make_repository(tmp_path / "ws")
    events = agent(tmp_path, tmp_path / "ws", session_entries())

    [baseline] = of(events, "baseline")
    assert baseline["head"] == head and baseline["reused"] is False
    assert baseline["files"] == baseline["measured"] == ["calc.py", "greet.py"]
    assert [ev["test_id"] for ev in baseline["evidence"]] == [LEGACY_ID]
    assert baseline["evidence"][0]["baseline"] is True

    checks = {(e["node"], e["attempt"]): e for e in of(events, "verification") if e["node"]}
    # node-1 does not touch the failing test: stable at attempt 1, the old failure shown
    first = checks[("node-1", 1)]
    assert first["stable"] and first["v"] == 0.0
    [old] = legacy_items(first)
    assert old["baseline"] is True and old["baseline_at"] == head
    # node-2 breaks another test: that one counts, the old one still does not
    broken = checks[("node-2", 1)]
    assert not broken["stable"] and broken["v_log"] == 2.0
    new = [ev for ev in broken["evidence"] if ev.get("test_id") == "tests/test_calc.py::test_add"]
    assert len(new) == 1 and "baseline" not in new[0]
    assert legacy_items(broken)[0]["baseline"] is True
    assert checks[("node-2", 2)]["stable"]

    committed = [(e["node"]) for e in of(events, "node_committed")]
    assert committed == ["node-1", "node-2"]
    [sheaf] = [e for e in of(events, "verification") if e.get("stage") == "sheaf"]
    assert sheaf["stable"] and legacy_items(sheaf)[0]["baseline"] is True
    assert events[-1]["outcome"] == "success", events[-1]

    status = run_keel("status", "-w", str(tmp_path / "ws"))
    assert status.returncode == 0, status.stderr
    assert f"baseline {head[:12]}: 1 already failing ({LEGACY_ID})" in status.stdout
    assert "(1 already failing)" in status.stdout  # on the nodes' lines
    assert f"python   {sys.executable} (keel, " in status.stdout  # Keel's own interpreter


def test_the_baseline_is_reused_at_the_same_head_and_defer_tests_succeeds(
    tmp_path: Path,
) -> None:
    make_repository(tmp_path / "ws")
    # A first session that commits nothing (its only node cannot pass) leaves HEAD unchanged.
    failing = [
        plan(node("node-1", ["calc.py"], symbols=["add"], title="Calc")),
        {"tier": "speculator", "node": None, "attempt": 1, "reply": {"hints": []}},
        bundle("node-1", writes={"calc.py": BROKEN_CALC}),
    ]
    first = agent(tmp_path, tmp_path / "ws", failing, "--max-attempts", "1")
    assert of(first, "baseline")[0]["reused"] is False
    assert first[-1]["outcome"] == "failed"

    clean = [*session_entries()[:3], bundle("node-2", writes={"calc.py": CALC + "# ok\n"})]
    events = agent(tmp_path, tmp_path / "ws", clean, "--defer-tests")
    [baseline] = of(events, "baseline")
    assert baseline["reused"] is True  # the suite is not run again at the same HEAD
    assert baseline["files"] == ["calc.py", "greet.py"] and baseline["measured"] == ["greet.py"]
    assert [ev["test_id"] for ev in baseline["evidence"]] == [LEGACY_ID]
    # deferred: the nodes run no tests; the sheaf runs the suite, which fails only the
    # test that failed before, so nothing is reopened and the session succeeds
    [sheaf] = [e for e in of(events, "verification") if e.get("stage") == "sheaf"]
    assert sheaf["stable"] and sheaf["v"] == 0.0
    assert legacy_items(sheaf)[0]["baseline"] is True
    assert not of(events, "nodes_reopened")
    assert events[-1]["outcome"] == "success", events[-1]


def test_a_resumed_session_keeps_the_baseline_of_its_first_run(tmp_path: Path) -> None:
    head = make_repository(tmp_path / "ws")
    transcript = write_transcript(tmp_path / "t.jsonl", session_entries())
    env = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "home" / "cfg")}
    killed = run_keel(
        "agent", "-y", "--json", "--model", f"replay:{transcript}", "-w", str(tmp_path / "ws"),
        "Add greet and touch calc", env={**env, "KEEL_FAULT": "node_commit_recorded:1"},
    )  # fmt: skip
    assert killed.returncode < 0  # SIGKILLed right after node-1's commit
    assert git(tmp_path / "ws", "rev-parse", "HEAD").strip() != head

    resumed = run_keel("resume", "--last", "-y", "--json", "-w", str(tmp_path / "ws"), env=env)
    events = json_events(resumed.stdout)
    [baseline] = of(events, "baseline")
    assert baseline["head"] == head and baseline["reused"] is True  # not the new HEAD
    assert [ev["test_id"] for ev in baseline["evidence"]] == [LEGACY_ID]
    fixed = [e for e in of(events, "verification") if e["node"] == "node-2" and e["stable"]]
    assert fixed and legacy_items(fixed[-1])[0]["baseline_at"] == head
    assert events[-1]["outcome"] == "success", events[-1]
