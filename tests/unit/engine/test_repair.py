"""Plan repair (docs/explanation/plan-repair.md): each repair on the plans small models
actually wrote (docs/benchmarks.md, runs 1-4), what a repair must never do, and the planner
reporting repairs and sending back what a repair cannot fix."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from keel.engine.planner import Planner, PlanningFailed, validate_plan
from keel.engine.repair import command_files, owner_of, repair_plan
from keel.engine.replies import TaskPlan
from tests.unit.engine.doubles import RecordingStore, ScriptedClient, make_gateway


def _node(node_id: str, kind: str = "code", **fields: Any) -> dict[str, Any]:
    owns = fields.pop("owns", [f"{node_id}.py"] if kind != "command" else [])
    return {"id": node_id, "title": f"node {node_id}", "kind": kind, "owns": owns, **fields}


def _plan(*nodes: dict[str, Any]) -> TaskPlan:
    return TaskPlan.model_validate({"nodes": list(nodes)})


def _nodes(plan: TaskPlan) -> dict[str, dict[str, Any]]:
    return {node.id: node.model_dump(mode="json") for node in plan.nodes}


def _exists(*paths: str) -> Any:
    return lambda path: path in paths


# -- 0. the task's file names ---------------------------------------------------------------

CALCULATOR_TASK = (
    "Create calculator.py with functions add(a, b) and divide(a, b); divide raises "
    "ValueError when b is 0 (e.g. divide(1, 0)). Add pytest tests in test_calculator.py."
)


def test_a_near_miss_of_a_file_the_task_names_takes_the_tasks_name() -> None:
    """Calculator, run 9: the plan owned calculate.py and its test imported calculator."""
    plan = _plan(
        _node(
            "calc",
            owns=["calculate.py", "test_calculator.py"],
            commands=["python -m pytest -q test_calculator.py"],
        ),
        _node("docs", owns=["README.md"], context=["./calculate.py"], depends_on=["calc"]),
    )
    repaired = repair_plan(plan, _exists(), CALCULATOR_TASK)
    nodes = _nodes(repaired.plan)
    assert nodes["calc"]["owns"] == ["calculator.py", "test_calculator.py"]
    assert nodes["docs"]["context"] == ["calculator.py"]
    assert nodes["calc"]["commands"] == ["python -m pytest -q test_calculator.py"]
    assert repaired.repairs == [
        "calc owned calculate.py, but the task names calculator.py: the plan uses the task's name"
    ]


def test_a_command_naming_the_misspelt_file_follows_the_rename() -> None:
    plan = _plan(_node("calc", owns=["calculate.py"], commands=["python calculate.py --check"]))
    repaired = repair_plan(plan, _exists(), CALCULATOR_TASK)
    assert _nodes(repaired.plan)["calc"]["commands"] == ["python calculator.py --check"]


@pytest.mark.parametrize(
    ("owns", "exists", "why"),
    [
        (["calculate.py", "calculater.py"], (), "two candidates: no telling which"),
        (["calculate.py", "calculator.py"], (), "the task's file is owned already"),
        (["calculate.py"], ("calculator.py",), "the task's file exists: not a new one"),
        (["calculate.py"], ("calculate.py",), "the plan's file exists: it is meant"),
        (["lib/calculator.py"], (), "another folder"),
        (["calculator.pyi"], (), "another extension"),
        (["test_calculate.py"], (), "a test for the code's name"),
        (["arithmetic.py"], (), "not a close name"),
    ],
)
def test_no_rename_without_one_clear_near_miss(
    owns: list[str], exists: tuple[str, ...], why: str
) -> None:
    plan = _plan(_node("calc", owns=owns))
    repaired = repair_plan(plan, _exists(*exists), "Create calculator.py with add(a, b).")
    assert _nodes(repaired.plan)["calc"]["owns"] == owns, why
    assert repaired.repairs == [], why


def test_a_file_the_task_names_too_is_never_renamed() -> None:
    """Both names in the task: each is meant."""
    plan = _plan(_node("calc", owns=["calculate.py"]))
    task = "Create calculator.py, and calculate.py that uses it."
    assert repair_plan(plan, _exists(), task).repairs == []


def test_without_the_workspace_nothing_is_renamed() -> None:
    plan = _plan(_node("calc", owns=["calculate.py"]))
    assert repair_plan(plan, None, CALCULATOR_TASK).repairs == []


# -- 1. one owner per file ------------------------------------------------------------------


def test_nodes_owning_one_file_are_merged_with_everything_they_had() -> None:
    """Calculator, run 1: one node per function of one file."""
    plan = _plan(
        _node("add", owns=["calculator.py"], contract={"symbols": ["add"]}, commands=["c1"]),
        _node("divide", owns=["./calculator.py"], contract={"symbols": ["divide"]}),
        _node("tests", "unit_test", owns=["test_calculator.py"], depends_on=["divide"]),
    )
    repaired = repair_plan(plan)
    nodes = _nodes(repaired.plan)
    assert list(nodes) == ["add", "tests"]
    assert nodes["add"]["owns"] == ["calculator.py"]
    assert nodes["add"]["contract"]["symbols"] == ["add", "divide"]
    assert nodes["add"]["commands"] == ["c1"]
    assert nodes["add"]["title"] == "node add; node divide"
    assert nodes["tests"]["depends_on"] == ["add"]  # the dependency follows the merge
    assert repaired.repairs == [
        "divide and add owned the same file (calculator.py): merged into add, which owns "
        "the files of both"
    ]
    assert validate_plan(repaired.plan) == []


def test_a_chain_of_shared_files_merges_into_one_node_without_depending_on_itself() -> None:
    plan = _plan(
        _node("a", owns=["x.py"]),
        _node("b", owns=["y.py", "x.py"], depends_on=["a"]),
        _node("c", owns=["y.py", "z.py"], depends_on=["b"]),
    )
    nodes = _nodes(repair_plan(plan).plan)
    assert list(nodes) == ["a"]
    assert nodes["a"]["owns"] == ["x.py", "y.py", "z.py"]
    assert nodes["a"]["depends_on"] == []


def test_duplicate_ids_are_left_for_validation() -> None:
    plan = _plan(_node("a", owns=["x.py"]), _node("a", owns=["x.py"]))
    repaired = repair_plan(plan)
    assert repaired.repairs == [] and len(repaired.plan.nodes) == 2
    assert "node id a is used twice" in validate_plan(repaired.plan)[0]


# -- 2. dependencies ------------------------------------------------------------------------


def test_a_file_in_depends_on_becomes_its_owner() -> None:
    """Greet, run 3: ``depends_on: ["greet.py"]`` three times."""
    plan = _plan(
        _node("code", owns=["greet.py"]),
        _node("test", "unit_test", owns=["test_greet.py"], depends_on=["./greet.py"]),
    )
    repaired = repair_plan(plan)
    assert _nodes(repaired.plan)["test"]["depends_on"] == ["code"]
    assert repaired.repairs == ["test depended on the file ./greet.py: now on its owner code"]
    assert validate_plan(repaired.plan) == []


def test_self_and_unknown_dependencies_of_a_code_node_are_dropped() -> None:
    plan = _plan(_node("a", depends_on=["a", "node-9"]), _node("b", depends_on=["a", "b"]))
    repaired = repair_plan(plan)
    assert _nodes(repaired.plan)["a"]["depends_on"] == []
    assert _nodes(repaired.plan)["b"]["depends_on"] == ["a"]
    assert "a depended on node-9, not a node of the plan: dropped" in repaired.repairs
    assert validate_plan(repaired.plan) == []


def test_an_unknown_dependency_of_a_test_node_becomes_the_only_code_node() -> None:
    """Fix, runs 1 and 3: unknown ids where the code node's id belonged."""
    plan = _plan(
        _node("fix_mean", owns=["stats.py"]),
        _node("t", "unit_test", owns=["test_stats.py"], depends_on=["node-1"]),
    )
    repaired = repair_plan(plan)
    assert _nodes(repaired.plan)["t"]["depends_on"] == ["fix_mean"]
    assert validate_plan(repaired.plan) == []


def test_an_unknown_dependency_of_a_test_node_is_sent_back_when_two_nodes_could_be_meant() -> None:
    plan = _plan(
        _node("a"),
        _node("b"),
        _node("t", "unit_test", owns=["test_a.py"], depends_on=["node-1"]),
    )
    repaired = repair_plan(plan)
    assert _nodes(repaired.plan)["t"]["depends_on"] == ["node-1"]
    assert "t depends on unknown node node-1" in validate_plan(repaired.plan)[0]


def test_a_dependency_on_a_file_that_nobody_writes_and_does_not_exist_is_kept() -> None:
    """Dropping it would run the node before a file it waits for: sent back instead."""
    plan = _plan(_node("a", depends_on=["data.csv"]))
    assert _nodes(repair_plan(plan, _exists()).plan)["a"]["depends_on"] == ["data.csv"]
    existing = repair_plan(plan, _exists("data.csv"))
    assert _nodes(existing.plan)["a"]["depends_on"] == []


# -- 3 and 4. contract symbols --------------------------------------------------------------


def test_a_test_function_in_a_code_nodes_contract_is_dropped() -> None:
    """Fix, run 4: ``test_mean`` in the contract of the node owning stats.py. A test's name
    is no interface: imposing it on the test node would fail a test named otherwise."""
    plan = _plan(
        _node("fix", owns=["stats.py"], contract={"symbols": ["mean", "test_mean", "TestX"]}),
        _node("t", "unit_test", owns=["test_stats.py"], depends_on=["fix"]),
    )
    repaired = repair_plan(plan)
    nodes = _nodes(repaired.plan)
    assert nodes["fix"]["contract"]["symbols"] == ["mean"]
    assert nodes["t"]["contract"]["symbols"] == []
    assert repaired.repairs == [
        "fix listed the test test_mean, TestX in its contract but owns no test file: dropped "
        "from its contract (the tests' names are the test files' own)"
    ]


def test_test_names_leave_the_contract_of_the_node_owning_the_tests_too() -> None:
    """Calculator, run 9: the node owning the code and its tests had to define test_add and
    assert_add; an attempt naming its tests otherwise failed on them alone."""
    symbols = ["add", "test_add", "assert_add", "TestAdd"]
    plan = _plan(_node("c", owns=["calc.py", "test_calc.py"], contract={"symbols": symbols}))
    repaired = repair_plan(plan)
    assert _nodes(repaired.plan)["c"]["contract"]["symbols"] == ["add"]
    assert repaired.repairs == [
        "c listed the test names test_add, assert_add, TestAdd in its contract: dropped (the "
        "tests are the node's own to name; no other node uses them)"
    ]


def test_an_assertion_helper_stays_in_a_node_without_tests() -> None:
    """A testing library's ``assert_close`` is its interface."""
    plan = _plan(_node("lib", owns=["checks.py"], contract={"symbols": ["assert_close"]}))
    assert repair_plan(plan).repairs == []


def test_a_parameter_in_the_contract_is_dropped() -> None:
    """Greet, the shared README: ``name`` declared as a contract symbol of greet(name)."""
    plan = _plan(
        {
            "id": "g",
            "title": "greet(name) returns a greeting",
            "kind": "code",
            "owns": ["greet.py"],
            "contract": {"symbols": ["greet", "name"]},
        }
    )
    repaired = repair_plan(plan)
    assert _nodes(repaired.plan)["g"]["contract"]["symbols"] == ["greet"]
    assert validate_plan(repaired.plan) == []


# -- 5 and 6. commands ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "files"),
    [
        ("python -m pytest -q test_calc.py", ["test_calc.py"]),
        ("pytest tests/test_a.py::test_x -k 'x and y'", ["tests/test_a.py"]),
        ("python -m pkg.main --out=x", []),
        ("python -c 'import a.py'", []),
        ("pip install -e .", []),
        ("pytest ../outside.py /etc/passwd.txt", []),
        ("pytest 'unterminated", []),
    ],
)
def test_the_files_a_command_names(command: str, files: list[str]) -> None:
    assert command_files(command) == files


def test_a_command_running_a_test_file_nobody_wrote_makes_its_node_own_it() -> None:
    """Calculator, run 4: the code node's command ran test_calculator.py, owned by nobody."""
    plan = _plan(
        _node("calc", owns=["calculator.py"], commands=["python -m pytest -q test_calculator.py"])
    )
    repaired = repair_plan(plan, _exists())
    assert _nodes(repaired.plan)["calc"]["owns"] == ["calculator.py", "test_calculator.py"]
    assert "calc now owns it and writes it" in repaired.repairs[0]


def test_a_command_running_an_existing_file_adopts_nothing() -> None:
    """Fix: test_stats.py is there already; the plan never named it, so nobody gets it."""
    plan = _plan(_node("fix", owns=["stats.py"], commands=["pytest test_stats.py"]))
    assert repair_plan(plan, _exists("test_stats.py")).repairs == []
    assert repair_plan(plan).repairs == []  # without a way to look, nothing is adopted


def test_a_command_running_a_test_node_s_file_merges_the_test_node_into_it() -> None:
    plan = _plan(
        _node("calc", owns=["calc.py"], commands=["pytest test_calc.py"]),
        _node("t", "unit_test", owns=["test_calc.py"], depends_on=["calc"], context=["calc.py"]),
        _node("docs", owns=["README.md"], depends_on=["t"]),
    )
    repaired = repair_plan(plan, _exists())
    nodes = _nodes(repaired.plan)
    assert list(nodes) == ["calc", "docs"]
    assert nodes["calc"]["owns"] == ["calc.py", "test_calc.py"]
    assert nodes["calc"]["depends_on"] == [] and nodes["calc"]["context"] == []
    assert nodes["docs"]["depends_on"] == ["calc"]
    assert validate_plan(repaired.plan) == []


def test_a_command_running_a_file_another_code_node_owns_adopts_nothing() -> None:
    """Adversarial: a command naming another node's file never makes it the runner's."""
    plan = _plan(
        _node("a", owns=["a.py"], commands=["python b.py", "pytest pkg/test_b.py"]),
        _node("b", owns=["b.py", "pkg/"]),
    )
    repaired = repair_plan(plan, _exists())
    assert _nodes(repaired.plan)["a"]["owns"] == ["a.py"]
    assert repaired.repairs == []


# -- what repair must never do --------------------------------------------------------------


def test_a_plan_that_only_repairs_into_a_cycle_is_refused() -> None:
    """a and c own x.py; merged, they depend on b, which depends on c: a cycle."""
    plan = _plan(
        _node("a", owns=["x.py"], depends_on=["b"]),
        _node("b", owns=["y.py"], depends_on=["c"]),
        _node("c", owns=["x.py"]),
    )
    repaired = repair_plan(plan)
    assert repaired.repairs
    assert validate_plan(repaired.plan) == ["dependency cycle: a -> b -> a"]


def test_no_repair_lets_a_node_write_a_file_that_was_another_s_or_that_exists() -> None:
    """Random plans: every file a repaired node owns was owned by a node merged into it, or
    is new and unowned and named by one of its commands."""
    rng = random.Random(17)
    files = ["a.py", "b.py", "test_a.py", "test_b.py", "pkg/c.py", "README.md"]
    for _ in range(400):
        nodes = []
        for index in range(rng.randint(1, 5)):
            nodes.append(
                _node(
                    f"n{index}",
                    rng.choice(["code", "unit_test", "command"]),
                    owns=rng.sample(files, rng.randint(0, 2)),
                    depends_on=rng.sample([f"n{i}" for i in range(5)] + files, rng.randint(0, 2)),
                    commands=[f"pytest {f}" for f in rng.sample(files, rng.randint(0, 2))],
                    contract={"symbols": rng.sample(["f", "test_f", "TestF"], 2)},
                )
            )
        plan = _plan(*nodes)
        existing = set(rng.sample(files, 2))
        repaired = repair_plan(plan, lambda path, existing=existing: path in existing)
        original = {node.id: set(node.owns) for node in plan.nodes}
        owned_before = set().union(*original.values())
        for node in repaired.plan.nodes:
            title_ids = {node.id} | {n.id for n in plan.nodes if n.title in node.title}
            mine = set().union(*(original[i] for i in title_ids))
            for path in set(node.owns) - mine:
                assert path not in owned_before and path not in existing, (plan, node)
                assert any(path in command_files(c) for c in node.commands)
        all_owns = [p for node in repaired.plan.nodes for p in node.owns]
        assert len(all_owns) == len(set(all_owns))  # one owner per file


def test_owner_of_sees_folders() -> None:
    plan = _plan(_node("a", owns=["pkg/"]), _node("b", owns=["b.py"]))
    assert owner_of("pkg/x.py", plan.nodes) == "a"
    assert owner_of("b.py", plan.nodes) == "b"
    assert owner_of("c.py", plan.nodes) is None


# -- the planner ----------------------------------------------------------------------------


async def test_the_planner_repairs_instead_of_asking_again_and_reports_it() -> None:
    shared = {"nodes": [_node("a", owns=["x.py"]), _node("b", owns=["x.py"])]}
    client = ScriptedClient([json.dumps(shared)])
    invalid: list[tuple[int, list[str]]] = []
    repaired: list[tuple[int, list[str]]] = []
    planner = Planner(
        make_gateway(client, RecordingStore()),
        on_invalid=lambda attempt, errors: invalid.append((attempt, errors)),
        on_repaired=lambda attempt, done: repaired.append((attempt, done)),
    )
    plan = await planner.plan("task", [], {}, ["python"])
    assert [node.id for node in plan.nodes] == ["a"]
    assert len(client.requests) == 1 and invalid == []
    assert repaired == [(1, [repaired[0][1][0]])] and "merged into a" in repaired[0][1][0]


async def test_what_repair_cannot_fix_is_sent_back_with_the_repairs_made() -> None:
    cyclic = {
        "nodes": [
            _node("a", owns=["x.py"], depends_on=["b"]),
            _node("b", owns=["y.py"], depends_on=["c"]),
            _node("c", owns=["x.py"]),
        ]
    }
    client = ScriptedClient([json.dumps(cyclic)] * 3)
    invalid: list[tuple[int, list[str]]] = []
    planner = Planner(
        make_gateway(client, RecordingStore()),
        on_invalid=lambda attempt, errors: invalid.append((attempt, errors)),
    )
    with pytest.raises(PlanningFailed, match="dependency cycle"):
        await planner.plan("task", [], {}, ["python"])
    assert len(client.requests) == 3
    assert "Keel had already repaired the plan" in client.requests[1].prompt
    assert invalid[0][1][0] == "dependency cycle: a -> b -> a"


async def test_the_planner_gives_the_task_to_the_repair(tmp_path: Path) -> None:
    misspelt = {"nodes": [_node("calc", owns=["calculate.py", "test_calculator.py"])]}
    client = ScriptedClient([json.dumps(misspelt)])
    planner = Planner(make_gateway(client, RecordingStore()), lambda *_: None, root=tmp_path)
    plan = await planner.plan(CALCULATOR_TASK, [], {}, ["python"])
    assert plan.nodes[0].owns == ["calculator.py", "test_calculator.py"]
    (tmp_path / "calculate.py").write_text("")  # now the plan's file is an existing one
    client = ScriptedClient([json.dumps(misspelt)])
    planner = Planner(make_gateway(client, RecordingStore()), lambda *_: None, root=tmp_path)
    plan = await planner.plan(CALCULATOR_TASK, [], {}, ["python"])
    assert plan.nodes[0].owns == ["calculate.py", "test_calculator.py"]
