"""Plan validation (docs/reference/protocol.md) and the architect's three attempts with feedback."""

from __future__ import annotations

import json
from typing import Any

import pytest

from keel.engine.models import Tier
from keel.engine.planner import (
    PlanInputs,
    Planner,
    PlanningFailed,
    PlanScope,
    find_cycle,
    validate_plan,
)
from keel.engine.replies import TaskPlan
from tests.unit.engine.doubles import RecordingStore, ScriptedClient, make_gateway


def _node(node_id: str, kind: str = "code", **fields: Any) -> dict[str, Any]:
    owns = fields.pop("owns", [f"{node_id}.py"] if kind != "command" else [])
    return {"id": node_id, "title": f"node {node_id}", "kind": kind, "owns": owns, **fields}


def _plan(*nodes: dict[str, Any]) -> TaskPlan:
    return TaskPlan.model_validate({"nodes": list(nodes)})


GOOD = [
    _node("setup", "command", owns=["pyproject.toml"], commands=["pip install -e ."]),
    _node("core", owns=["src/calc/core.py", "src/calc/__init__.py"], depends_on=["setup"]),
    _node("cli", owns=["src/calc/cli.py"], depends_on=["core"]),
    _node("tests", "unit_test", owns=["tests/test_calc.py"], depends_on=["cli"]),
]


def test_a_good_plan_has_no_errors() -> None:
    assert validate_plan(_plan(*GOOD)) == []


def test_a_command_node_with_only_commands_is_fine() -> None:
    assert validate_plan(_plan(_node("init", "command", commands=["git init"]))) == []


def test_duplicate_ids_are_reported() -> None:
    errors = validate_plan(_plan(_node("a"), _node("a", owns=["b.py"])))
    assert errors == ["node id a is used twice: give each node its own id"]


def test_unknown_dependency_is_reported() -> None:
    errors = validate_plan(_plan(_node("a", depends_on=["ghost"])))
    assert errors == ["a depends on unknown node ghost: name only ids of this plan"]


def test_self_dependency_is_reported() -> None:
    errors = validate_plan(_plan(_node("a", depends_on=["a"])))
    assert "a depends on itself" in errors


def test_a_cycle_is_reported_with_its_path() -> None:
    errors = validate_plan(
        _plan(
            _node("a", depends_on=["c"]),
            _node("b", depends_on=["a"]),
            _node("c", depends_on=["b"]),
            _node("d", depends_on=["a"]),
        )
    )
    assert errors == ["dependency cycle: a -> c -> b -> a"]


def test_find_cycle_returns_nothing_for_a_dag_with_shared_ancestors() -> None:
    assert find_cycle({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}) == []


def test_a_file_owned_by_two_nodes_is_reported() -> None:
    errors = validate_plan(_plan(_node("a", owns=["x.py"]), _node("b", owns=["./x.py"])))
    assert errors == [
        "x.py is owned by both a and b: give each file one owner (one node may write several "
        "functions of a file)"
    ]


def test_a_file_inside_a_directory_owned_by_another_node_is_reported() -> None:
    errors = validate_plan(_plan(_node("a", owns=["src/"]), _node("b", owns=["src/pkg/x.py"])))
    assert errors == ["src/pkg/x.py is owned by both a (src/) and b"]


def test_a_node_may_own_a_directory_and_files_inside_it() -> None:
    assert validate_plan(_plan(_node("a", owns=["src", "src/x.py"]))) == []


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", ".git/config"])
def test_an_invalid_owned_path_is_reported(bad: str) -> None:
    errors = validate_plan(_plan(_node("a", owns=[bad])))
    assert len(errors) == 1
    assert errors[0].startswith("a owns an invalid path:")
    assert bad in errors[0]


def test_a_unit_test_node_may_test_one_code_node_of_several() -> None:
    errors = validate_plan(
        _plan(
            _node("core"),
            _node("extra"),
            _node("tests", "unit_test", depends_on=["core"], context=["core.py"]),
        )
    )
    assert errors == []


def test_a_unit_test_node_may_depend_on_code_transitively() -> None:
    errors = validate_plan(
        _plan(
            _node("core"),
            _node("cli", depends_on=["core"]),
            _node("tests", "unit_test", depends_on=["cli"], context=["core.py", "cli.py"]),
        )
    )
    assert errors == []


def test_a_unit_test_node_must_depend_on_some_non_test_node() -> None:
    errors = validate_plan(
        _plan(
            _node("core"),
            _node("lonely", "unit_test"),
            _node("tests_of_tests", "unit_test", depends_on=["lonely"]),
        )
    )
    assert errors == [
        "unit_test node lonely must depend on the code or command node it tests: "
        "add that node's id to its depends_on",
        "unit_test node tests_of_tests must depend on the code or command node it tests: "
        "add that node's id to its depends_on",
    ]


def test_a_unit_test_node_may_reach_the_code_through_another_test_node() -> None:
    errors = validate_plan(
        _plan(
            _node("core"),
            _node("unit", "unit_test", depends_on=["core"]),
            _node("integration", "unit_test", depends_on=["unit"]),
        )
    )
    assert errors == []


def test_a_unit_test_node_must_depend_on_the_owner_of_every_file_it_reads() -> None:
    errors = validate_plan(
        _plan(
            _node("setup", "command", owns=["pyproject.toml"]),
            _node("core", owns=["src/core.py"]),
            _node("cli", owns=["src/cli.py", "src/cli_help.py"]),
            _node(
                "tests",
                "unit_test",
                depends_on=["core"],
                context=["src/core.py", "src/cli.py", "src/cli_help.py", "pyproject.toml"],
            ),
        )
    )
    assert errors == [
        "unit_test node tests reads files it does not depend on; add to its depends_on the "
        "nodes that own them: cli (src/cli.py, src/cli_help.py), setup (pyproject.toml)"
    ]


@pytest.mark.parametrize(
    "context",
    [["src/pkg/mod.py"], ["src/pkg"], ["./src/pkg/"]],
    ids=["file-in-owned-dir", "dir-with-owned-files", "unnormalised"],
)
def test_context_owners_are_found_through_directories(context: list[str]) -> None:
    errors = validate_plan(
        _plan(
            _node("setup", "command", owns=["pyproject.toml"]),
            _node("pkg", owns=["src/pkg/"]),
            _node("tests", "unit_test", depends_on=["setup"], context=context),
        )
    )
    assert len(errors) == 1 and errors[0].endswith(f"pkg ({context[0]})"), errors


def test_context_files_nobody_owns_or_the_test_owns_need_no_dependency() -> None:
    errors = validate_plan(
        _plan(
            _node("core"),
            _node(
                "tests",
                "unit_test",
                owns=["tests/test_core.py", "tests/conftest.py"],
                depends_on=["core"],
                context=["README.md", "tests/conftest.py"],
            ),
        )
    )
    assert errors == []


def test_a_code_node_must_own_something() -> None:
    errors = validate_plan(_plan(_node("a", owns=[])))
    assert errors == ["a is a code node but owns no files: list the files it writes in owns"]


def test_a_command_node_needs_files_or_commands() -> None:
    errors = validate_plan(_plan(_node("a", "command")))
    assert errors == ["a is a command node with neither files nor commands"]


def test_every_problem_is_reported_at_once() -> None:
    errors = validate_plan(
        _plan(_node("a", owns=[], depends_on=["zzz"]), _node("b", "command"), _node("b"))
    )
    assert len(errors) == 4


# -- the architect loop ----------------------------------------------------------------------

CYCLIC = {"nodes": [_node("a", depends_on=["b"]), _node("b", depends_on=["a"])]}
VALID = {"nodes": [_node("a", owns=["./src/a.py"]), _node("t", "unit_test", depends_on=["a"])]}


async def _plan_with(script: list[str]) -> tuple[TaskPlan | None, ScriptedClient, list[Any]]:
    client = ScriptedClient(script)
    invalid: list[tuple[int, list[str]]] = []
    planner = Planner(
        make_gateway(client, RecordingStore()),
        on_invalid=lambda attempt, errors: invalid.append((attempt, errors)),
    )
    try:
        plan = await planner.plan("build a calculator", ["README.md"], {}, ["python"])
    except PlanningFailed:
        plan = None
    return plan, client, invalid


async def test_the_planner_feeds_back_errors_until_a_plan_validates() -> None:
    plan, client, invalid = await _plan_with(
        ["this is not json", json.dumps(CYCLIC), json.dumps(VALID)]
    )

    assert plan is not None
    assert [n.id for n in plan.nodes] == ["a", "t"]
    assert plan.nodes[0].owns == ["src/a.py"]  # owned paths come back normalized
    prompts = [request.prompt for request in client.requests]
    assert len(prompts) == 3
    assert "previous plan was invalid" not in prompts[0]
    assert "previous plan was invalid" in prompts[1]
    assert "Invalid JSON" in prompts[1]
    assert "dependency cycle: a -> b -> a" in prompts[2]
    assert "Invalid JSON" not in prompts[2]
    assert [attempt for attempt, _ in invalid] == [1, 2]


async def test_the_planner_asks_the_architect_with_attempt_headers() -> None:
    _, client, _ = await _plan_with(["nope", "nope", json.dumps(VALID)])
    headers = [request.headers() for request in client.requests]
    assert [h["X-Keel-Tier"] for h in headers] == ["architect"] * 3
    assert [h["X-Keel-Attempt"] for h in headers] == ["1", "2", "3"]
    assert all(h["X-Keel-Session"] == "sess-1" and "X-Keel-Node" not in h for h in headers)
    assert {r.schema_name for r in client.requests} == {"task_plan"}
    assert {r.tier for r in client.requests} == {Tier.ARCHITECT}


async def test_three_invalid_replies_fail_planning() -> None:
    client = ScriptedClient(["{}", json.dumps(CYCLIC), "[]", json.dumps(VALID)])
    planner = Planner(make_gateway(client, RecordingStore()), on_invalid=lambda a, e: None)
    with pytest.raises(PlanningFailed, match="no valid plan after 3 attempts"):
        await planner.plan("task", [], {}, [])
    assert len(client.requests) == 3


def test_a_scope_limits_the_nodes_and_names_the_files_the_plan_must_own() -> None:
    scope = PlanScope(max_nodes=1, must_own=("calc.py",))
    assert validate_plan(_plan(_node("fix", owns=["calc.py"])), scope) == []
    in_src = PlanScope(must_own=("src/calc.py",))
    assert validate_plan(_plan(_node("fix", owns=["src/"])), in_src) == []  # a directory owns it
    errors = validate_plan(_plan(_node("a", owns=["util.py"]), _node("b", owns=["x.py"])), scope)
    assert errors == [
        "this session allows at most 1 node(s) and the plan has 2: merge the work into 1 node(s)",
        "calc.py must be owned by a node of the plan (the task is about it)",
    ]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"title": "Calc \x1b[2J"}, "title of core contains the control character \\x1b"),
        ({"id": "co\nre"}, "node id co\\nre contains the control character \\n"),
        ({"id": "a/b"}, "must be a plain name"),
        ({"id": ".."}, "must be a plain name"),
        ({"id": "x" * 129}, "longer than 128 bytes"),
    ],
)
def test_ids_and_titles_a_terminal_or_a_directory_cannot_take_are_refused(
    fields: dict[str, str], expected: str
) -> None:
    bad = {**_node("core", owns=["core.py"]), **fields}
    errors = validate_plan(_plan(bad))
    assert any(expected in error for error in errors), errors


def test_a_contract_symbol_that_the_title_shows_as_a_parameter_is_sent_back() -> None:
    """greet(name) in the title and "name" in contract.symbols: the contract check would
    wait for a definition of name that never comes, so the plan says how to fix it."""
    plan = TaskPlan.model_validate(
        {
            "nodes": [
                {
                    "id": "greet",
                    "title": "greet(name, *, excited=False) returns a greeting",
                    "kind": "code",
                    "owns": ["greet.py"],
                    "contract": {"symbols": ["greet", "name", "excited"]},
                }
            ]
        }
    )
    assert validate_plan(plan) == [
        "greet lists 'name' in contract.symbols but it is a parameter of greet(): remove it; "
        "symbols are names the node defines, such as 'greet'",
        "greet lists 'excited' in contract.symbols but it is a parameter of greet(): remove "
        "it; symbols are names the node defines, such as 'greet'",
    ]


def test_a_symbol_named_in_a_title_as_a_function_is_fine() -> None:
    plan = TaskPlan.model_validate(
        {
            "nodes": [
                {
                    "id": "calc",
                    "title": "add(a, b) and divide(a, b)",
                    "kind": "code",
                    "owns": ["calc.py"],
                    "contract": {"symbols": ["add", "divide"]},
                }
            ]
        }
    )
    assert validate_plan(plan) == []


def test_a_dependency_on_a_file_names_the_node_that_owns_it() -> None:
    plan = TaskPlan.model_validate(
        {
            "nodes": [
                {"id": "greet", "title": "greet", "kind": "code", "owns": ["greet.py"]},
                {
                    "id": "greet-tests",
                    "title": "tests",
                    "kind": "unit_test",
                    "owns": ["test_greet.py"],
                    "depends_on": ["greet.py"],
                },
            ]
        }
    )
    errors = validate_plan(plan)
    assert errors[0] == (
        "greet-tests depends on greet.py, which is a file: name the node that owns it "
        "(greet) in depends_on"
    )


async def test_a_resumed_plan_builds_its_inputs_only_for_the_attempt_it_sends() -> None:
    """A crash after an invalid first attempt: the resume replays attempt 1 without the
    workspace view, then builds the view once for attempt 2, whose prompt carries attempt 1's
    errors as the first run's would have."""
    store = RecordingStore()
    store.results["model:architect:-:1"] = {"text": json.dumps(CYCLIC)}
    client = ScriptedClient([json.dumps(VALID)])
    invalid: list[int] = []
    planner = Planner(make_gateway(client, store), on_invalid=lambda a, e: invalid.append(a))
    views = 0

    async def inputs() -> PlanInputs:
        nonlocal views
        views += 1
        return PlanInputs(["src/a.py", "LISTED.md"], [], ["python"])

    plan = await planner.plan_lazily("task", inputs)
    assert [n.id for n in plan.nodes] == ["a", "t"] and invalid == [1]
    assert views == 1
    [request] = client.requests
    assert request.attempt == 2 and "LISTED.md" in request.prompt
    assert "dependency cycle: a -> b -> a" in request.prompt


async def test_a_fully_recorded_plan_never_builds_its_inputs() -> None:
    store = RecordingStore()
    store.results["model:architect:-:1"] = {"text": "not json"}
    store.results["model:architect:-:2"] = {"text": json.dumps(VALID)}
    client = ScriptedClient([])
    planner = Planner(make_gateway(client, store), on_invalid=lambda a, e: None)

    async def inputs() -> PlanInputs:
        raise AssertionError("a replayed plan listed the workspace")

    plan = await planner.plan_lazily("task", inputs)
    assert [n.id for n in plan.nodes] == ["a", "t"] and client.requests == []
