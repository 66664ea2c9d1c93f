"""Plan repair and adoption through the real engine (git, SQLite, pytest): the plan a small
model wrote (one file split between two nodes, a command running a test nobody owns) is
repaired, the node writes the code and its test, and both are committed."""

from __future__ import annotations

from pathlib import Path

from tests.integration.conftest import bundle, git, node, plan, run_session

CALC = "def add(a: int, b: int) -> int:\n    return a + b\n\n\ndef sub(a: int, b: int) -> int:\n"
CALC += "    return a - b\n"
TEST = "from calc import add, sub\n\n\ndef test_add() -> None:\n    assert add(1, 2) == 3\n\n\n"
TEST += "def test_sub() -> None:\n    assert sub(3, 2) == 1\n"


def _repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("# calc\n")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "user: initial")
    return path


async def test_a_small_model_s_plan_is_repaired_and_its_test_adopted(tmp_path: Path) -> None:
    workspace = _repo(tmp_path / "ws")
    entries = [
        plan(
            node(
                "add", ["calc.py"], symbols=["add"], commands=["python -m pytest -q test_calc.py"]
            ),
            node("sub", ["./calc.py"], symbols=["sub", "test_sub"], depends_on=["calc.py"]),
        ),
        bundle("add", writes={"calc.py": CALC, "test_calc.py": TEST}),
    ]
    result, sink = await run_session(workspace, entries, flags={"speculate": False})
    assert result.outcome == "success", result.reason
    [repaired] = sink.of("plan_repaired")
    assert any("merged into add" in r for r in repaired["repairs"])
    assert any("add runs test_calc.py" in r for r in repaired["repairs"])
    [ready] = sink.of("plan_ready")
    assert [(n["id"], n["owns"]) for n in ready["nodes"]] == [("add", ["calc.py", "test_calc.py"])]
    assert git(workspace, "show", "HEAD:test_calc.py") == TEST
    assert git(workspace, "show", "HEAD:calc.py") == CALC
