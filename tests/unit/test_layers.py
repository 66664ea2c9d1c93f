"""The import rule: the engine and bundles stay pure, adapters stay apart, only the composition
root (keel.app) wires them, the language server (keel.lsp) is a layer that only keel.app and
keel.cli import and that reaches adapters only through what keel.app injects, and the server
never prints.

Every module under server/keel is parsed with ``ast`` (no import needed, so a module that does
not import cleanly is still checked). Imports inside functions and ``TYPE_CHECKING`` blocks
count too: a dependency is a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "server" / "keel"

THIRD_PARTY_ADAPTER_LIBS = (
    "pygls",
    "lsprotocol",
    "aiosqlite",
    "git",
    "openai",
    "anthropic",
    "aiohttp",
)
ADAPTERS = (
    "keel.store",
    "keel.ledger",
    "keel.providers",
    "keel.plugins",
    "keel.process",
    "keel.sandbox",
    "keel.context",
    "keel.dashboard",
    "keel.api",
)
OUTER = ("keel.app", "keel.cli", "keel.config", "keel.lsp")
ALLOWED_ADAPTER_IMPORTS = {("keel.plugins", "keel.process")}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module (or module.attribute for "from m import a")
    line: int

    def __str__(self) -> str:
        return f"{self.module} imports {self.target} (line {self.line})"


def module_name(path: Path, root: Path = PACKAGE_ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(module: str, source: str, *, is_package: bool = False) -> list[Import]:
    """Every module ``source`` imports, relative imports resolved against ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append(Import(module, base, node.lineno))
            # "from keel import app" imports keel.app
            found += [Import(module, f"{base}.{a.name}", node.lineno) for a in node.names]
    return found


def _under(name: str, prefixes: Iterable[str]) -> str | None:
    for prefix in prefixes:
        if name == prefix or name.startswith(prefix + "."):
            return prefix
    return None


def _modules() -> list[tuple[str, Path]]:
    return sorted((module_name(p), p) for p in PACKAGE_ROOT.rglob("*.py"))


def _all_imports() -> list[Import]:
    found: list[Import] = []
    for name, path in _modules():
        found += imports_of(name, path.read_text(), is_package=path.name == "__init__.py")
    return found


ALL_IMPORTS = _all_imports()


def _report(violations: list[Import]) -> str:
    return "import rule broken:\n  " + "\n  ".join(sorted({str(v) for v in violations}))


# -- the walker itself -----------------------------------------------------------------------


def test_the_walker_sees_the_package() -> None:
    names = {name for name, _ in _modules()}
    assert {"keel", "keel.engine.planner", "keel.bundles.apply", "keel.config"} <= names
    assert any(i.module == "keel.engine.planner" for i in ALL_IMPORTS)


def test_the_walker_resolves_every_import_form() -> None:
    source = (
        "import git\n"
        "import os.path as p\n"
        "from keel import app\n"
        "from . import sibling\n"
        "from ..store.db import SqliteStore\n"
        "def f():\n"
        "    import openai\n"
    )
    targets = {i.target for i in imports_of("keel.engine.node", source)}
    assert {"git", "os.path", "keel.app", "keel.engine.sibling", "keel.store.db"} <= targets
    assert "openai" in targets
    package = imports_of("keel.engine", "from .models import Tier\n", is_package=True)
    assert "keel.engine.models" in {i.target for i in package}


# -- the rules -------------------------------------------------------------------------------


def test_engine_and_bundles_import_no_adapter_or_adapter_library() -> None:
    forbidden = (*THIRD_PARTY_ADAPTER_LIBS, *ADAPTERS, *OUTER)
    violations = [
        i
        for i in ALL_IMPORTS
        if _under(i.module, ("keel.engine", "keel.bundles")) and _under(i.target, forbidden)
    ]
    assert not violations, _report(violations)


def test_bundles_import_nothing_from_the_engine() -> None:
    violations = [
        i
        for i in ALL_IMPORTS
        if _under(i.module, ("keel.bundles",)) and _under(i.target, ("keel.engine",))
    ]
    assert not violations, _report(violations)


def test_adapters_never_import_each_other() -> None:
    violations = []
    for i in ALL_IMPORTS:
        source, target = _under(i.module, ADAPTERS), _under(i.target, ADAPTERS)
        if (
            source
            and target
            and source != target
            and (source, target) not in ALLOWED_ADAPTER_IMPORTS
        ):
            violations.append(i)
    assert not violations, _report(violations)


def test_only_the_composition_root_and_cli_import_keel_app() -> None:
    # keel.api runs sessions, so it gets its adapters from the composition root like the CLI.
    violations = [
        i
        for i in ALL_IMPORTS
        if _under(i.target, ("keel.app",))
        and not _under(i.module, ("keel.app", "keel.cli", "keel.api"))
    ]
    assert not violations, _report(violations)


def test_only_the_composition_root_and_cli_import_the_language_server() -> None:
    violations = [
        i
        for i in ALL_IMPORTS
        if _under(i.target, ("keel.lsp",))
        and not _under(i.module, ("keel.app", "keel.cli", "keel.lsp"))
    ]
    assert not violations, _report(violations)


def test_the_language_server_imports_no_adapter_and_not_the_composition_root() -> None:
    violations = [
        i
        for i in ALL_IMPORTS
        if _under(i.module, ("keel.lsp",)) and _under(i.target, (*ADAPTERS, "keel.app", "keel.cli"))
    ]
    assert not violations, _report(violations)


def test_only_providers_import_the_model_sdks() -> None:
    violations = [
        i
        for i in ALL_IMPORTS
        if _under(i.target, ("openai", "anthropic")) and not _under(i.module, ("keel.providers",))
    ]
    assert not violations, _report(violations)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("keel.engine.x", "import aiosqlite\n"),
        ("keel.engine.x", "from keel.store import SqliteStore\n"),
        ("keel.bundles.x", "from ..engine import models\n"),
        ("keel.bundles.x", "from keel import config\n"),
    ],
)
def test_the_rules_catch_a_planted_violation(module: str, source: str) -> None:
    forbidden = (*THIRD_PARTY_ADAPTER_LIBS, *ADAPTERS, *OUTER, "keel.engine")
    planted = imports_of(module, source)
    assert any(_under(i.target, forbidden) for i in planted), planted


# -- no print --------------------------------------------------------------------------------


def _prints(source: str) -> list[int]:
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "print"
    ]


def test_print_detection_works() -> None:
    assert _prints("def f():\n    print('x')\nlogger.print('y')\n") == [2]


def test_the_server_never_prints_outside_the_cli() -> None:
    offenders = [
        f"{name} calls print() on line {line}"
        for name, path in _modules()
        if name != "keel.cli"
        for line in _prints(path.read_text())
    ]
    assert not offenders, "\n".join(offenders)
