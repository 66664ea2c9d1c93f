"""The language server's seams: no import circle in ``keel.lsp``, and no service that takes
the whole server.

Both are read with ``ast`` like the layer rules beside them (``test_layers.py``): imports
inside functions and ``if TYPE_CHECKING`` blocks count, because a type-only import is still a
dependency a reader has to follow. Only ``keel.lsp.server`` (which builds the collaborators)
and the feature modules' registration (which hands the pygls server its handlers) may name
:class:`~keel.lsp.server.KeelLanguageServer` in a signature, and only they may take
:class:`~keel.lsp.services.Services`, the bundle of every collaborator.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping

import pytest

from tests.unit.test_layers import PACKAGE_ROOT, imports_of, module_name

LSP = PACKAGE_ROOT / "lsp"
#: May take the server or all of its collaborators: the composition and the LSP surface.
COMPOSERS = ("keel.lsp.server", "keel.lsp.services", "keel.lsp.features")
WHOLE = ("KeelLanguageServer", "Services")


def _sources() -> dict[str, tuple[str, bool]]:
    return {
        module_name(path): (path.read_text(encoding="utf-8"), path.name == "__init__.py")
        for path in sorted(LSP.rglob("*.py"))
    }


def _resolve(target: str, modules: set[str]) -> str | None:
    """The module ``target`` names (``keel.lsp.x.Name`` is ``keel.lsp.x``), if one of ours."""
    while target:
        if target in modules:
            return target
        target = target.rpartition(".")[0]
    return None


def import_graph(sources: Mapping[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """Module -> the modules of ``sources`` it imports (parent packages left out: Python
    runs a package's ``__init__`` before any of its modules anyway)."""
    modules = set(sources)
    graph: dict[str, set[str]] = {name: set() for name in sources}
    for name, (source, is_package) in sources.items():
        for found in imports_of(name, source, is_package=is_package):
            target = _resolve(found.target, modules)
            if target is None or target == name or name.startswith(target + "."):
                continue
            graph[name].add(target)
    return graph


def circles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Every import circle, each as the path that closes it (depth-first search)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def names_in(annotation: ast.expr) -> set[str]:
    """The names an annotation mentions, inside string (forward) annotations too."""
    names: set[str] = set()
    for node in ast.walk(annotation):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names |= names_in(ast.parse(node.value, mode="eval").body)
    return names


def whole_server_parameters(module: str, source: str) -> Iterator[str]:
    """``module.function(parameter)`` for every parameter annotated with the whole server."""
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        arguments = node.args
        every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
        every += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
        for argument in every:
            if argument.annotation is None:
                continue
            annotation = ast.unparse(argument.annotation)
            if names_in(argument.annotation) & set(WHOLE):
                yield f"{module}.{node.name}({argument.arg}: {annotation}) line {node.lineno}"


def _composer(module: str) -> bool:
    return any(module == c or module.startswith(c + ".") for c in COMPOSERS)


def test_the_walk_sees_the_language_server() -> None:
    graph = import_graph(_sources())
    assert {"keel.lsp.server", "keel.lsp.approval", "keel.lsp.features.commands"} <= set(graph)
    assert "keel.lsp.approval" in graph["keel.lsp.server"]
    assert "keel.lsp.services" in graph["keel.lsp.features.commands"]  # type-only, counted


def test_there_is_no_import_circle_in_the_language_server() -> None:
    found = circles(import_graph(_sources()))
    assert not found, "import circles in keel.lsp:\n" + "\n".join(" -> ".join(c) for c in found)


def test_no_service_takes_the_whole_server() -> None:
    offenders = [
        hit
        for module, (source, _) in _sources().items()
        if not _composer(module)
        for hit in whole_server_parameters(module, source)
    ]
    assert not offenders, "take narrow collaborators instead:\n" + "\n".join(offenders)


_CIRCLE_BY_TYPE = {
    "keel.lsp.server": ("from keel.lsp import features\n", False),
    "keel.lsp.features": ("from keel.lsp.features import hover\n", True),
    "keel.lsp.features.hover": (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from keel.lsp.server import KeelLanguageServer\n",
        False,
    ),
}
_CIRCLE_IN_A_FUNCTION = {
    "keel.lsp.a": ("def f():\n    from keel.lsp.b import g\n", False),
    "keel.lsp.b": ("from keel.lsp.a import f as g\n", False),
}
_NO_CIRCLE = {
    "keel.lsp": ("from keel.lsp.server import KeelLanguageServer\n", True),
    "keel.lsp.server": ("from keel.lsp.a import f\n", False),
    "keel.lsp.a": ("import keel.lsp\n", False),
}


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        (
            _CIRCLE_BY_TYPE,
            [
                [
                    "keel.lsp.features",
                    "keel.lsp.features.hover",
                    "keel.lsp.server",
                    "keel.lsp.features",
                ]
            ],
        ),
        (_CIRCLE_IN_A_FUNCTION, [["keel.lsp.a", "keel.lsp.b", "keel.lsp.a"]]),
        (_NO_CIRCLE, []),
    ],
)
def test_the_circle_check_catches_planted_circles(
    sources: dict[str, tuple[str, bool]], expected: list[list[str]]
) -> None:
    assert circles(import_graph(sources)) == expected


@pytest.mark.parametrize(
    "source",
    [
        "def f(server: KeelLanguageServer) -> None: ...",
        "async def f(x: int, *, server: 'KeelLanguageServer') -> None: ...",
        "class A:\n    def __init__(self, s: keel.lsp.server.KeelLanguageServer) -> None: ...",
        "def f(s: Services | None = None) -> None: ...",
        "def f(*servers: KeelLanguageServer) -> None: ...",
    ],
)
def test_the_parameter_check_catches_a_planted_server(source: str) -> None:
    assert list(whole_server_parameters("keel.lsp.x", source))


def test_the_parameter_check_lets_narrow_collaborators_pass() -> None:
    source = "def f(server: LanguageServer, client: ClientPort, view: SessionView) -> None: ..."
    assert list(whole_server_parameters("keel.lsp.x", source)) == []
