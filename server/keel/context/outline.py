"""What a source file defines and what it refers to, for the repository map.

Python files are read with :mod:`ast`: classes and functions at module level, inside class bodies
(two levels deep) and under module-level ``if``/``try``, each with its line and its first source
line as the signature; references are the names and attributes the file loads and the names it
imports. Other languages get no outline: the map lists them by path.
"""

from __future__ import annotations

import ast
import json
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any

SIGNATURE_CHARS = 110
PYTHON_SUFFIXES = (".py", ".pyi")


@dataclass(frozen=True)
class Definition:
    name: str
    kind: str  # "class" or "def"
    line: int
    depth: int  # 0 at module level, 1 in a class body, 2 in a nested class
    text: str  # the signature line, stripped and cut at SIGNATURE_CHARS


class Facts:
    """What one file defines, uses, imports and binds.

    Read back from a cache, the definitions stay raw (lists, or their JSON text) until a
    renderer asks for them (most files of a large repository never are), which keeps a warm
    map fast.
    """

    __slots__ = ("_defs", "_raw", "imports", "names", "parsed", "refs")

    def __init__(
        self,
        defs: tuple[Definition, ...] = (),
        refs: dict[str, int] | None = None,
        imports: tuple[str, ...] = (),
        parsed: bool = False,
        names: tuple[str, ...] = (),
        *,
        raw: list[Any] | bytes | None = None,
    ) -> None:
        self._defs: tuple[Definition, ...] | None = None if raw is not None else defs
        self._raw = raw
        self.refs: dict[str, int] = refs or {}
        self.imports = imports
        self.parsed = parsed
        #: Other names the file binds: attributes it assigns (``self.x = ``), parameters, and
        #: module- and class-level variables; a task naming one points at this file.
        self.names = names

    @property
    def defs(self) -> tuple[Definition, ...]:
        if self._defs is None:
            try:
                raw = json.loads(self._raw) if isinstance(self._raw, bytes) else self._raw
                self._defs = tuple(
                    Definition(str(n), str(k), int(ln), int(dp), str(t))
                    for n, k, ln, dp, t in raw or []
                )
            except (TypeError, ValueError):  # a damaged cache: no outline, listed by path
                self._defs = ()
            self._raw = None
        return self._defs

    @property
    def def_names(self) -> set[str]:
        if isinstance(self._raw, list):
            return {str(d[0]) for d in self._raw if isinstance(d, list) and d}
        return {d.name for d in self.defs}

    @property
    def has_defs(self) -> bool:
        if isinstance(self._raw, bytes):
            return self._raw.strip() not in (b"", b"[]")
        return bool(self._raw) if self._raw is not None else bool(self._defs)

    def to_json(self) -> list[Any]:
        return [
            [[d.name, d.kind, d.line, d.depth, d.text] for d in self.defs],
            self.refs,
            list(self.imports),
            self.parsed,
            list(self.names),
        ]

    @classmethod
    def from_json(cls, data: Any) -> Facts:
        defs, refs, imports, parsed, names = data
        if not isinstance(defs, list) or not isinstance(refs, dict):
            raise TypeError("damaged facts")
        return cls(
            (),
            {str(k): int(v) for k, v in refs.items()},
            tuple(str(i) for i in imports),
            bool(parsed),
            tuple(str(n) for n in names),
            raw=defs,
        )


def outlinable(path: str) -> bool:
    return path.endswith(PYTHON_SUFFIXES)


def python_facts(source: str, module: str) -> Facts:
    """The definitions, references and imported modules of one Python file.

    ``module`` is the file's dotted name, to resolve relative imports. A file that does not
    parse yields empty facts (``parsed`` false): the map then lists it by path.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return Facts()
    lines = source.splitlines()
    defs: list[Definition] = []

    def signature(node: ast.AST) -> str:
        lineno = getattr(node, "lineno", 1)
        text = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
        return text if len(text) <= SIGNATURE_CHARS else text[: SIGNATURE_CHARS - 1] + "…"

    def visit(body: list[ast.stmt], depth: int) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                defs.append(Definition(node.name, "class", node.lineno, depth, signature(node)))
                if depth < 2:
                    visit(node.body, depth + 1)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                defs.append(Definition(node.name, "def", node.lineno, depth, signature(node)))
            elif depth == 0 and isinstance(node, ast.If):
                visit(node.body, depth)
                visit(node.orelse, depth)
            elif depth == 0 and isinstance(node, ast.Try):
                visit(node.body, depth)
                for handler in node.handlers:
                    visit(handler.body, depth)
                visit(node.orelse, depth)
                visit(node.finalbody, depth)

    visit(tree.body, 0)
    refs: Counter[str] = Counter()
    imports: set[str] = set()
    bound: set[str] = set()
    package = module.rsplit(".", 1)[0] if "." in module else ""
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            refs[node.id] += 1
        elif isinstance(node, ast.Attribute):
            refs[node.attr] += 1
            if isinstance(node.ctx, ast.Store):
                bound.add(node.attr)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.Import):
            imports.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".") if package else []
                keep = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = ".".join([*keep, base] if base else keep)
            if base:
                imports.add(base)
                imports.update(f"{base}.{alias.name}" for alias in node.names)
            for alias in node.names:
                refs[alias.name] += 1
    for body in [tree.body, *(c.body for c in ast.walk(tree) if isinstance(c, ast.ClassDef))]:
        for stmt in body:
            targets = (
                stmt.targets
                if isinstance(stmt, ast.Assign)
                else [stmt.target]
                if isinstance(stmt, ast.AnnAssign)
                else []
            )
            bound.update(t.id for t in targets if isinstance(t, ast.Name))
    bound.discard("self")
    bound.discard("cls")
    names = tuple(sorted(bound - {d.name for d in defs}))
    return Facts(tuple(defs), dict(refs), tuple(sorted(imports)), True, names)


def module_name(path: str) -> str:
    """``src/pkg/mod.py`` -> ``src.pkg.mod``; ``pkg/__init__.py`` -> ``pkg``."""
    stem = path.rsplit(".", 1)[0]
    if stem.endswith("/__init__"):
        stem = stem[: -len("/__init__")]
    return stem.replace("/", ".")
