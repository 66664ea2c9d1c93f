"""V_sheaf for Python: every import between the workspace's own modules resolves.

Nodes are generated separately, so the seams between them are where a plan falls apart: node 3
imports ``mul`` from ``calc.core`` that node 2 never wrote. The checker would say so too, but
only for the files it is shown and mixed with everything else it knows; this pass reads the
whole tree's own imports with :mod:`ast` and nothing else, so it is cheap, needs no tool and
cannot be degraded.

Only imports whose top-level package is local (a module or package under the root, or under
``root/src`` for a src layout) are judged. Third-party and standard-library imports are the
checker's business. Imports inside ``try`` blocks that catch ``ImportError`` are optional by
design and skipped. A module that star-imports or defines ``__getattr__`` may define anything,
so every name imported from it is accepted. All of this is blocking file I/O: run it in a thread.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_SOURCE_SUFFIXES = (".py", ".pyi")
_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})


@dataclass(frozen=True)
class ImportProblem:
    """One import that does not resolve, or a file that does not parse."""

    path: str
    line: int
    message: str


@dataclass(frozen=True)
class _Module:
    """Where a module lives: its source file and/or its package directory."""

    file: Path | None
    package_dir: Path | None


@dataclass
class _ModuleNames:
    """What a module defines at top level; ``open`` when it may define anything."""

    names: set[str] = field(default_factory=set)
    open: bool = False


@dataclass(frozen=True)
class _ImportSite:
    line: int
    module: str  # absolute dotted name ("" when a relative import cannot be placed)
    names: tuple[str, ...]  # empty for ``import x.y``
    error: str | None = None


class _Resolver:
    """Finds local modules under the root and the names they define (cached per file)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        src = root / "src"
        self.bases = [src, root] if src.is_dir() else [root]
        self._names: dict[Path, _ModuleNames] = {}

    def module_name(self, file: Path) -> tuple[str, ...] | None:
        """The dotted parts of ``file``'s module, relative to the base it lives under."""
        for base in self.bases:
            try:
                rel = file.relative_to(base)
            except ValueError:
                continue
            parts = [*rel.parent.parts, rel.stem]
            return tuple(parts[:-1] if parts[-1] == "__init__" else parts)
        return None

    def is_local(self, top: str) -> bool:
        return any(self._locate(base, (top,)) is not None for base in self.bases)

    def find(self, dotted: str) -> _Module | None:
        parts = tuple(dotted.split("."))
        for base in self.bases:
            found = self._locate(base, parts)
            if found is not None:
                return found
        return None

    @staticmethod
    def _locate(base: Path, parts: tuple[str, ...]) -> _Module | None:
        target = base.joinpath(*parts)
        for suffix in _SOURCE_SUFFIXES:
            if target.with_name(target.name + suffix).is_file():
                return _Module(target.with_name(target.name + suffix), None)
        if target.is_dir():
            for init in ("__init__.py", "__init__.pyi"):
                if (target / init).is_file():
                    return _Module(target / init, target)
            if any(target.glob("*.py")) or any(target.glob("*/__init__.py")):
                return _Module(None, target)  # a namespace package
        return None

    def defines(self, module: _Module, name: str) -> bool:
        if module.package_dir is not None and self._locate(module.package_dir, (name,)):
            return True
        if module.file is None:
            return False
        names = self._module_names(module.file)
        return names.open or name in names.names

    def _module_names(self, file: Path) -> _ModuleNames:
        if file not in self._names:
            try:
                tree = ast.parse(file.read_text(encoding="utf-8", errors="replace"))
            except (SyntaxError, ValueError, OSError):
                self._names[file] = _ModuleNames(open=True)  # its own check reports it
            else:
                self._names[file] = _top_level_names(tree)
        return self._names[file]


def _top_level_names(tree: ast.Module) -> _ModuleNames:
    out = _ModuleNames()
    for stmt in _top_level_statements(tree.body):
        _bind(stmt, out)
    return out


def _top_level_statements(body: Sequence[ast.stmt]) -> Iterator[ast.stmt]:
    """Module-level statements, descending into if/try/with/for but never into defs."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        for attr in ("body", "orelse", "finalbody"):
            yield from _top_level_statements(getattr(stmt, attr, []))
        for handler in getattr(stmt, "handlers", []):
            yield from _top_level_statements(handler.body)


def _bind(stmt: ast.stmt, out: _ModuleNames) -> None:
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        out.names.add(stmt.name)
        if stmt.name == "__getattr__":
            out.open = True
    elif isinstance(stmt, ast.Assign):
        for target in stmt.targets:
            out.names.update(_target_names(target))
        _add_dunder_all(stmt, out)
    elif isinstance(stmt, ast.AnnAssign | ast.AugAssign):
        out.names.update(_target_names(stmt.target))
    elif isinstance(stmt, ast.For | ast.AsyncFor | ast.With | ast.AsyncWith):
        targets = [stmt.target] if isinstance(stmt, ast.For | ast.AsyncFor) else []
        targets += [i.optional_vars for i in getattr(stmt, "items", []) if i.optional_vars]
        for target in targets:
            out.names.update(_target_names(target))
    elif isinstance(stmt, ast.Import):
        out.names.update(a.asname or a.name.split(".")[0] for a in stmt.names)
    elif isinstance(stmt, ast.ImportFrom):
        for alias in stmt.names:
            if alias.name == "*":
                out.open = True
            out.names.add(alias.asname or alias.name)


def _target_names(target: ast.expr) -> set[str]:
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, ast.Tuple | ast.List):
        return set().union(*(_target_names(e) for e in target.elts))
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return set()


def _add_dunder_all(stmt: ast.Assign, out: _ModuleNames) -> None:
    if any(isinstance(t, ast.Name) and t.id == "__all__" for t in stmt.targets):
        if isinstance(stmt.value, ast.List | ast.Tuple):
            out.names.update(
                e.value
                for e in stmt.value.elts
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
            )


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    kinds = handler.type
    if kinds is None:
        return True
    elts = kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]
    return any(isinstance(e, ast.Name) and e.id in _IMPORT_ERRORS for e in elts)


class _ImportCollector(ast.NodeVisitor):
    """The import statements of one file, except those guarded by ``except ImportError``."""

    def __init__(self, package: tuple[str, ...]) -> None:
        self.package = package
        self.sites: list[_ImportSite] = []
        self._guarded = 0

    def visit_Try(self, node: ast.Try) -> None:
        self._visit_try(node)

    def visit_TryStar(self, node: ast.TryStar) -> None:
        self._visit_try(node)

    def _visit_try(self, node: ast.Try | ast.TryStar) -> None:
        guarded = any(_catches_import_error(h) for h in node.handlers)
        self._guarded += guarded
        for stmt in node.body:
            self.visit(stmt)
        self._guarded -= guarded
        for other in [*node.handlers, *node.orelse, *node.finalbody]:
            self.visit(other)

    def visit_Import(self, node: ast.Import) -> None:
        if not self._guarded:
            for alias in node.names:
                self.sites.append(_ImportSite(node.lineno, alias.name, ()))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if self._guarded:
            return
        names = tuple(a.name for a in node.names if a.name != "*")
        if not node.level:
            self.sites.append(_ImportSite(node.lineno, node.module or "", names))
            return
        if node.level > len(self.package):
            error = "attempted relative import beyond top-level package"
            self.sites.append(_ImportSite(node.lineno, "", names, error))
            return
        base = self.package[: len(self.package) - (node.level - 1)]
        module = ".".join([*base, *([node.module] if node.module else [])])
        self.sites.append(_ImportSite(node.lineno, module, names))


def _package_of(resolver: _Resolver, file: Path) -> tuple[str, ...]:
    parts = resolver.module_name(file) or ()
    return parts if file.stem == "__init__" else parts[:-1]


def _check_site(resolver: _Resolver, site: _ImportSite) -> Iterator[str]:
    if site.error:
        yield site.error
        return
    if not site.module or not resolver.is_local(site.module.split(".")[0]):
        return
    module = resolver.find(site.module)
    if module is None:
        yield f"No module named '{site.module}'"
        return
    for name in site.names:
        if not resolver.defines(module, name):
            yield f"cannot import name '{name}' from '{site.module}'"


def find_import_problems(root: Path, files: Sequence[str]) -> list[ImportProblem]:
    """Unresolved local imports and syntax errors in ``files`` (``.py`` paths under ``root``)."""
    resolver = _Resolver(root)
    problems: list[ImportProblem] = []
    for relpath in files:
        file = root / relpath
        try:
            tree = ast.parse(file.read_text(encoding="utf-8", errors="replace"), filename=relpath)
        except SyntaxError as exc:
            problems.append(ImportProblem(relpath, exc.lineno or 1, f"syntax error: {exc.msg}"))
            continue
        except FileNotFoundError:
            continue  # deleted by the bundle: nothing left to import from it
        except (OSError, ValueError) as exc:
            problems.append(ImportProblem(relpath, 1, f"cannot read: {exc}"))
            continue
        collector = _ImportCollector(_package_of(resolver, file))
        collector.visit(tree)
        for site in collector.sites:
            problems.extend(
                ImportProblem(relpath, site.line, msg) for msg in _check_site(resolver, site)
            )
    return problems
