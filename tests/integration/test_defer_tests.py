"""`--defer-tests`: V_log is skipped while nodes converge; the full suite runs once in the
sheaf check, and a failure there reopens the responsible nodes with the evidence."""

from __future__ import annotations

from pathlib import Path

from keel.store import SqliteStore
from tests.integration.conftest import bundle, node, plan, run_session

WRONG = "def add(a: int, b: int) -> int:\n    return a - b\n"
RIGHT = "def add(a: int, b: int) -> int:\n    return a + b\n"
TESTS = "from calc import add\n\n\ndef test_add() -> None:\n    assert add(2, 3) == 5\n"


def _entries() -> list[dict[str, object]]:
    return [
        plan(
            node("node-1", ["calc.py"], symbols=["add"], title="Adder"),
            node(
                "node-2",
                ["tests/test_calc.py"],
                kind="unit_test",
                depends_on=["node-1"],
                title="Tests",
            ),
        ),
        bundle("node-1", 1, writes={"calc.py": WRONG}),
        bundle("node-2", 1, writes={"tests/test_calc.py": TESTS}),
        # reopened by the sheaf's failing test
        bundle("node-1", 2, writes={"calc.py": RIGHT}),
        bundle("node-2", 2, writes={"tests/test_calc.py": TESTS}),
    ]


async def test_deferred_tests_run_in_the_sheaf_and_reopen_the_responsible_nodes(
    tmp_path: Path,
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    result, sink = await run_session(
        workspace, _entries(), flags={"defer_tests": True, "log_llm": True}
    )
    assert result.outcome == "success", sink.events[-1]
    node_checks = [e for e in sink.of("verification") if e["node"] is not None]
    first_round = [e for e in node_checks if e["attempt"] == 1]
    assert all(e["stable"] and e["v_log"] == 0 for e in first_round)  # tests were deferred
    sheaf = [e for e in sink.of("verification") if e.get("stage") == "sheaf"]
    assert [e["stable"] for e in sheaf] == [False, True]
    assert any(ev.get("test_id") == "tests/test_calc.py::test_add" for ev in sheaf[0]["evidence"])
    assert sink.of("nodes_reopened")[0]["nodes"] == ["node-1", "node-2"]
    assert (workspace / "calc.py").read_text() == RIGHT
    store = await SqliteStore.open(workspace / ".keel" / "keel.db")
    try:
        calls = await store.session(result.session_id).model_calls()
    finally:
        await store.close()
    reopen_prompt = next(
        str(c.prompt)
        for c in calls
        if c.tier == "actuator" and c.node_id == "node-1" and c.attempt == 2
    )
    assert "tests/test_calc.py::test_add" in reopen_prompt
