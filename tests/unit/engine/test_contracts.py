"""V_str: owned files exist, contract symbols are defined, forbidden patterns are absent."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from keel.engine.contracts import check_contract
from keel.engine.models import Component, NodeKind
from keel.engine.replies import NodeContract, PlanNode


def _node(symbols: Sequence[str] = (), forbidden: Sequence[str] = ()) -> PlanNode:
    return PlanNode(
        id="n1",
        title="calc",
        kind=NodeKind.CODE,
        owns=["calc.py"],
        contract=NodeContract(symbols=list(symbols), forbidden=list(forbidden)),
    )


@pytest.mark.parametrize(
    "source",
    [
        "def add(a, b):\n    return a + b\n",
        "async def add(a, b):\n    return a + b\n",
        "class add:\n    pass\n",
        "add = lambda a, b: a + b\n",
        "add: int = 3\n",
        "from .core import add\n",
        "from calc.core import sub, add as add\n",
        "from .core import (sub, add)\n",
        "from .core import (\n    sub,\n    add,\n)\n",  # how formatters wrap long imports
        "if True:\n    def add(a, b):\n        return a + b\n",
    ],
)
def test_a_defined_symbol_is_found(source: str) -> None:
    report = check_contract(_node(symbols=["add"]), {"calc.py": source})
    assert report.residuals == ()
    assert report.sensor == "contract"


@pytest.mark.parametrize(
    "source",
    [
        "def adder(a, b):\n    return a + b\n",
        "x = add(1, 2)\n",
        "# def add(a, b): commented out\n",
        "import add\n",
        "from add import other\n",
        "from .core import (\n    sub,\n)\nx = add(1, 2)\n",
        "from .core import sub\nprint(add)\n",
    ],
)
def test_a_symbol_that_is_only_mentioned_is_missing(source: str) -> None:
    report = check_contract(_node(symbols=["add"]), {"calc.py": source})
    [residual] = report.residuals
    assert residual.component is Component.STR
    assert "contract symbol 'add' is not defined" in residual.message
    assert "calc.py" in residual.message


def test_a_symbol_in_any_owned_file_counts() -> None:
    report = check_contract(
        _node(symbols=["add", "divide"]),
        {"a.py": "def add(a, b): ...\n", "b.py": "def divide(a, b): ...\n"},
    )
    assert report.residuals == ()


def test_each_missing_symbol_is_its_own_residual() -> None:
    report = check_contract(_node(symbols=["add", "sub", "mul"]), {"c.py": "def sub(): ...\n"})
    assert sorted(r.message.split("'")[1] for r in report.residuals) == ["add", "mul"]


def test_a_forbidden_pattern_is_reported_with_its_file_and_line() -> None:
    source = "def add(a, b):\n    # TODO: handle overflow\n    return a + b  # TODO again\n"
    report = check_contract(_node(forbidden=["TODO"]), {"calc.py": source, "ok.py": "x = 1\n"})
    [residual] = report.residuals  # one per file: the first occurrence
    assert residual.component is Component.STR
    assert residual.path == "calc.py"
    assert residual.line == 2
    assert "forbidden pattern 'TODO'" in residual.message
    assert residual.describe() == "[contract] calc.py:2: forbidden pattern 'TODO' present"


def test_an_owned_file_that_was_not_created_is_a_residual() -> None:
    report = check_contract(_node(), {"calc.py": "x = 1\n", "missing.py": None})
    [residual] = report.residuals
    assert residual.component is Component.STR
    assert residual.path == "missing.py"
    assert "not created" in residual.message


def test_an_owned_file_the_bundle_deletes_is_not_missing() -> None:
    owned = {"calc.py": "x = 1\n", "old.py": None, "missing.py": None}
    report = check_contract(_node(), owned, deleted=["old.py"])
    assert [r.path for r in report.residuals] == ["missing.py"]


def test_a_missing_file_does_not_count_as_defining_anything() -> None:
    report = check_contract(_node(symbols=["add"]), {"calc.py": None})
    messages = sorted(r.message for r in report.residuals)
    assert len(messages) == 2
    assert "any owned file" in messages[0]
