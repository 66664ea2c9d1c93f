"""The store's seam, checked beside the import rule (test_layers.py): the engine's ports name
typed records, not ``dict``/``Mapping[str, Any]``; the store's reads return those records;
and every default is written once, in ``keel.engine.defaults``.

Like test_layers, the source is parsed with ``ast``: an annotation written as a string (``from
__future__ import annotations``) is still an annotation.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import tokenize
from pathlib import Path

from keel.config import KeelConfig
from keel.engine import defaults, records
from keel.engine.energy import weights_from
from keel.engine.models import EnergyWeights
from keel.engine.settings import EngineSettings
from keel.lsp.views import SessionView
from keel.store import SqliteSessionRecords, SqliteStore

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "server" / "keel"
#: Containers whose ``[str, Any]`` form is an untyped record.
_CONTAINERS = {"dict", "Dict", "Mapping", "MutableMapping"}


def untyped_records(source: str) -> list[str]:
    """Every ``dict[str, Any]``-like subscript in ``source``, as ``line: text``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Subscript):
            continue
        name = node.value.attr if isinstance(node.value, ast.Attribute) else None
        if isinstance(node.value, ast.Name):
            name = node.value.id
        if name not in _CONTAINERS or not isinstance(node.slice, ast.Tuple):
            continue
        key, value = (ast.unparse(e) for e in node.slice.elts)
        if key == "str" and value in ("Any", "typing.Any"):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_check_finds_what_it_looks_for() -> None:
    source = "x: dict[str, Any]\ny: Mapping[str, typing.Any] | None\nz: dict[str, int]\n"
    assert untyped_records(source) == ["1: dict[str, Any]", "2: Mapping[str, typing.Any]"]


def test_the_engines_ports_name_no_untyped_record() -> None:
    source = (PACKAGE_ROOT / "engine" / "ports.py").read_text(encoding="utf-8")
    assert untyped_records(source) == []
    assert "Any" not in {
        alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }, "free JSON in the ports is a JsonObject, named as such"


def test_free_json_is_named_once() -> None:
    """``records.py`` holds the one ``Mapping[str, Any]``: the ``JsonObject`` alias."""
    source = (PACKAGE_ROOT / "engine" / "records.py").read_text(encoding="utf-8")
    [only] = untyped_records(source)
    assert "Mapping[str, Any]" in only
    assert "JsonObject: TypeAlias = Mapping[str, Any]" in source


def test_every_record_is_a_frozen_dataclass() -> None:
    kinds = [getattr(records, name) for name in records.__all__ if name != "JsonObject"]
    assert len(kinds) >= 11
    for kind in kinds:
        assert dataclasses.is_dataclass(kind), kind
        assert kind.__dataclass_params__.frozen, kind  # type: ignore[attr-defined]


def test_the_stores_reads_return_records_not_rows() -> None:
    """No public method of the store or its session handle returns ``dict[str, Any]``; the
    only free JSON it hands out is a step's result or a baseline, named ``JsonObject``."""
    source = (PACKAGE_ROOT / "store" / "db.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    returns = {}
    for cls in tree.body:
        if isinstance(cls, ast.ClassDef) and cls.name in ("SqliteStore", "SqliteSessionRecords"):
            for fn in cls.body:
                if isinstance(fn, ast.AsyncFunctionDef | ast.FunctionDef) and fn.returns:
                    if not fn.name.startswith("_"):
                        returns[f"{cls.name}.{fn.name}"] = ast.unparse(fn.returns)
    assert returns, "no methods found: the check would pass vacuously"
    untyped = {name: text for name, text in returns.items() if "dict[str, Any]" in text}
    assert untyped == {}
    free = {name for name, text in returns.items() if "JsonObject" in text}
    assert free == {
        "SqliteSessionRecords.step_result",
        "SqliteStore.baseline",
    }
    assert callable(SqliteStore.session) and inspect.iscoroutinefunction(SqliteSessionRecords.nodes)


def test_defaults_are_the_same_everywhere_they_are_read() -> None:
    settings, config = EngineSettings(), KeelConfig()
    from_config = config.engine_settings(auto_approve=False)
    assert settings.epsilon == from_config.epsilon == defaults.EPSILON
    assert settings.weights == from_config.weights == EnergyWeights()
    assert EnergyWeights() == weights_from(list(defaults.WEIGHTS))
    assert SessionView("s").epsilon == defaults.EPSILON
    assert SessionView("s").weights == EnergyWeights()
    for key in ("max_attempts", "mode", "complexity_k", "command_timeout_s", "explore_turns"):
        assert getattr(settings, key) == getattr(from_config, key), key
    for key in ("explore_tokens", "map_tokens", "max_prompt_tokens"):
        assert getattr(settings, key) == getattr(from_config, key), key
    assert config.budget.max_steps == defaults.MAX_STEPS


def restated_defaults(source: str) -> list[int]:
    """Lines of code (not strings or comments) that write the default epsilon next to a
    name about epsilon, or the default weights as numbers."""
    names: dict[int, set[str]] = {}
    numbers: dict[int, list[str]] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.NAME:
            names.setdefault(token.start[0], set()).add(token.string.lower())
        elif token.type == tokenize.NUMBER:
            numbers.setdefault(token.start[0], []).append(token.string)
    weights = [repr(w) for w in defaults.WEIGHTS]
    found = []
    for line, values in numbers.items():
        about_epsilon = any("epsilon" in n or "threshold" in n for n in names.get(line, ()))
        if (about_epsilon and repr(defaults.EPSILON) in values) or values[:5] == weights:
            found.append(line)
    return found


def test_the_restatement_check_finds_what_it_looks_for() -> None:
    source = 'epsilon = 0.1\n"epsilon 0.1"\nw = [1.0, 0.5, 2.0, 1.0, 1.0]\nx = 0.1\n'
    assert restated_defaults(source) == [1, 3]


def test_no_module_restates_the_default_epsilon_or_weights() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE_ROOT)}:{line}"
        for path in sorted(PACKAGE_ROOT.rglob("*.py"))
        if path.name != "defaults.py"
        for line in restated_defaults(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
