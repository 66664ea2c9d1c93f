"""The Python plugin: ty for V_syn, pytest for V_log, pyproject for V_boot, imports for V_sheaf.

Every sensor measures a sandbox tree at ``root`` with real tools, and says "degraded" rather
than "fine" whenever it could not measure.

*Interpreter.* Third-party imports must resolve the way they will when the code runs, so the
checker and the test runner use the project's interpreter (``python``, found in the real
workspace by :mod:`keel.plugins.environment`); without one, the tree's own
``<root>/.venv/bin/python`` when there is one, else the interpreter Keel runs in
(``sys.executable``), which ships ty and pytest.

*Checker.* ``ty server`` driven over LSP (:mod:`keel.plugins.lsp_checker`), falling back to
``ty check --output-format concise``; without ty, basedpyright then pyright the same way; with
none of them, a degraded report. ty finds a ``src/`` layout by itself (checked: ``import calc``
with ``src/calc/__init__.py`` resolves), and pyright's ``autoSearchPaths`` does the same.

*Tests.* ``python -m pytest`` writes JUnit XML into a private temporary directory (never into
the tree), read back per test by :mod:`keel.plugins.junit`. An uninstalled ``src/`` layout is put
on ``PYTHONPATH`` so that its tests import the package as they will once it is installed.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import re
import shlex
import shutil
import sys
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from keel.engine.models import CommandResult, Component, Residual, SensorReport
from keel.plugins.base import (
    ToolFinder,
    clean,
    degraded,
    diagnostic_residual,
    find_tool,
    last_lines,
    relative_to_root,
)
from keel.plugins.environment import pytest_missing
from keel.plugins.junit import SuiteResult, read_junit
from keel.plugins.python_imports import find_import_problems
from keel.process import SubprocessRunner, ToolRunner

if TYPE_CHECKING:
    from keel.plugins.lsp_checker import LspOutcome, LspServer

log = logging.getLogger(__name__)

SENSOR_CHECK = "python.check"
SENSOR_TESTS = "python.tests"
SENSOR_BOOT = "python.boot"
SENSOR_SHEAF = "python.sheaf"

DEFAULT_CHECKERS: tuple[str, ...] = ("ty", "basedpyright", "pyright")
_PY_SUFFIXES = (".py", ".pyi")
_OWNED_NAMES = frozenset({"pyproject.toml", "setup.cfg", "setup.py", "conftest.py"})
_PLUGIN_OUTPUT_CAP = 4 * 1024 * 1024  # the plugins' own tools: JSON must not be cut short
_NO_TESTS = 5
_USAGE_ERROR = 4

_TY_LINE = re.compile(
    r"^(?P<path>[^\s:][^:\n]*):(?P<line>\d+):(?P<col>\d+): "
    r"(?P<severity>error|warning|info)\[(?P<rule>[^\]]+)\] (?P<message>.*)$",
    re.MULTILINE,
)

# --- command allow-list -------------------------------------------------------------------

_PYTHON_EXE = re.compile(r"^python(3(\.\d+)?)?$")
_SHELL_META = re.compile(r"[;&|<>`$\n\r]")
_PYTHON_MODULES = frozenset({"pytest", "compileall", "py_compile", "unittest"})
#: Options that would make a "read-only" tool write, delete, upload or load extra code.
_DENIED_OPTIONS: dict[str, tuple[str, ...]] = {
    "pytest": (
        "--basetemp",
        "--junitxml",
        "--junit-xml",
        "--resultlog",
        "--result-log",
        "--pastebin",
        "--debug",
        "--log-file",
        "--override-ini",
        "-p",
        "-o",
    ),
    "ty": ("--fix", "--add-ignore", "--update-baseline", "--watch", "-W"),
    "ruff": ("--fix", "--unsafe-fixes", "--add-noqa", "--output-file", "-o", "--watch", "-w"),
    "unittest": (),
    "compileall": (),
    "py_compile": (),
}


def _uses_denied_option(tool: str, args: Sequence[str]) -> bool:
    for arg in args:
        for option in _DENIED_OPTIONS[tool]:
            if option.startswith("--"):
                if arg == option or arg.startswith(option + "=") or arg.startswith(option + "-"):
                    return True
            elif arg.startswith("-") and not arg.startswith("--") and option[1] in arg[1:]:
                return True
    return False


def python_command_allowed(command: str) -> bool:
    """See :meth:`PythonPlugin.command_allowed`."""
    if _SHELL_META.search(command):
        return False
    try:
        argv = shlex.split(command)
    except ValueError:
        return False
    if not argv:
        return False
    if _PYTHON_EXE.match(argv[0]) and len(argv) >= 3 and argv[1] == "-m":
        module = argv[2]
        return module in _PYTHON_MODULES and not _uses_denied_option(module, argv[3:])
    if argv[0] == "pytest":
        return not _uses_denied_option("pytest", argv[1:])
    if argv[0] in ("ty", "ruff") and len(argv) >= 2 and argv[1] == "check":
        return not _uses_denied_option(argv[0], argv[2:])
    return False


# --- the plugin ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _CheckPlan:
    files: list[str]
    python: str


class PythonPlugin:
    """The :class:`~keel.engine.ports.LanguagePlugin` for Python.

    ``runner`` runs every tool (default a :class:`~keel.process.SubprocessRunner` with a large
    output cap); ``python`` overrides the interpreter choice; ``tool_finder`` locates
    executables (tests hide tools with it); ``checkers`` is the preference order of type
    checkers; ``prefer_lsp=False`` skips the language-server route and uses the CLI directly.
    """

    def __init__(
        self,
        runner: ToolRunner | None = None,
        *,
        python: str | Path | None = None,
        tool_finder: ToolFinder = find_tool,
        checkers: Sequence[str] = DEFAULT_CHECKERS,
        prefer_lsp: bool = True,
        lsp_timeout_s: float = 60.0,
        check_timeout_s: float = 120.0,
        test_timeout_s: float = 300.0,
    ) -> None:
        self.runner: ToolRunner = runner or SubprocessRunner(output_cap_bytes=_PLUGIN_OUTPUT_CAP)
        self.python = None if python is None else str(python)
        self.find_tool = tool_finder
        self.checkers = tuple(checkers)
        self.prefer_lsp = prefer_lsp
        self.lsp_timeout_s = lsp_timeout_s
        self.check_timeout_s = check_timeout_s
        self.test_timeout_s = test_timeout_s

    @property
    def name(self) -> str:
        return "python"

    def owns_file(self, path: str) -> bool:
        name = PurePosixPath(path).name
        if name.endswith(_PY_SUFFIXES) or name in _OWNED_NAMES:
            return True
        return name.startswith("requirements") and name.endswith(".txt")

    def is_test_file(self, path: str) -> bool:
        pure = PurePosixPath(path)
        if pure.suffix != ".py":
            return False
        name = pure.name
        if name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py":
            return True
        return "tests" in pure.parts[:-1]

    def command_allowed(self, command: str) -> bool:
        """True for commands that only read or check the tree, the ones ``-y`` may approve.

        One command, no shell metacharacters (``;``, ``&``, ``|``, ``<``, ``>``, backticks,
        ``$``, newlines), and one of these argv prefixes (``python`` may be ``python``,
        ``python3`` or ``python3.X``):

        * ``python -m pytest``, ``pytest``
        * ``python -m unittest``
        * ``python -m compileall``, ``python -m py_compile``
        * ``ty check``, ``ruff check``

        Options that would turn them into writers or uploaders are refused: pytest's
        ``--basetemp`` (it deletes that directory), ``--junitxml``, ``--pastebin``,
        ``--debug``, ``--log-file``, ``-p`` and ``-o``; ty's ``--fix``, ``--add-ignore`` and
        ``--watch``; ruff's ``--fix``, ``--unsafe-fixes``, ``--add-noqa``, ``--output-file``
        and ``--watch``.
        """
        return python_command_allowed(command)

    # -- V_syn -----------------------------------------------------------------------------

    async def check(self, root: Path, files: Sequence[str]) -> SensorReport:
        """ty (or basedpyright/pyright) diagnostics of the given ``.py``/``.pyi`` files."""
        plan = await asyncio.to_thread(self._plan_check, root, files)
        if not plan.files:
            return clean(SENSOR_CHECK, "no Python files to check")
        for checker in self.checkers:
            report = await self._check_with(checker, root, plan)
            if report is not None:
                return report
        missing = " / ".join(self.checkers) or "type checker"
        return degraded(SENSOR_CHECK, f"{missing} not found: V_syn cannot be measured")

    def _plan_check(self, root: Path, files: Sequence[str]) -> _CheckPlan:
        targets = [f for f in files if f.endswith(_PY_SUFFIXES) and (root / f).is_file()]
        return _CheckPlan(sorted(dict.fromkeys(targets)), self._interpreter(root))

    def _interpreter(self, root: Path) -> str:
        if self.python is not None:
            return self.python
        local = root / ".venv" / "bin" / "python"
        return str(local) if local.exists() else sys.executable

    async def _check_with(self, checker: str, root: Path, plan: _CheckPlan) -> SensorReport | None:
        """The report of ``checker``, or ``None`` when it is not installed."""
        await _load_lsp_checker()
        if checker == "ty":
            exe = self.find_tool("ty")
            if exe is None:
                return None
            return await self._lsp_then_cli(_ty_server(exe, plan.python), root, plan, exe)
        lsp_exe = self.find_tool(f"{checker}-langserver")
        cli_exe = self.find_tool(checker)
        if lsp_exe is None and cli_exe is None:
            return None
        server = None if lsp_exe is None else _pyright_server(checker, lsp_exe, plan.python)
        return await self._lsp_then_cli(server, root, plan, cli_exe)

    async def _lsp_then_cli(
        self,
        server: LspServer | None,
        root: Path,
        plan: _CheckPlan,
        cli_exe: str | None,
    ) -> SensorReport:
        from keel.plugins.lsp_checker import LspCheckError, collect_diagnostics

        failure = ""
        if server is not None and self.prefer_lsp:
            try:
                outcome = await collect_diagnostics(
                    server,
                    root,
                    plan.files,
                    env=self.runner.environment(),
                    timeout_s=self.lsp_timeout_s,
                    confine=self.runner.confine,
                )
            except LspCheckError as exc:
                failure = str(exc)
                log.warning("LSP route failed, falling back to the CLI: %s", failure)
            else:
                return _lsp_report(server, outcome)
        if cli_exe is None:
            assert server is not None  # _check_with found at least one of the two
            reason = failure or f"{server.name} has no command-line checker installed"
            return degraded(SENSOR_CHECK, f"{reason}: V_syn cannot be measured")
        name = server.name if server else Path(cli_exe).name
        report = await self._run_cli(name, cli_exe, root, plan)
        if failure:
            detail = f"{report.detail} (LSP route failed: {failure})"
            return SensorReport(report.sensor, report.residuals, report.degraded, detail)
        return report

    async def _run_cli(self, name: str, exe: str, root: Path, plan: _CheckPlan) -> SensorReport:
        if name == "ty":
            argv = [exe, "check", "--output-format", "concise", "--python", plan.python]
            result = await self._run(argv + _as_paths(plan.files), root, self.check_timeout_s)
            return _ty_cli_report(result, root)
        argv = [exe, "--outputjson", "--pythonpath", plan.python]
        if name == "basedpyright":
            argv += ["--level", "error"]  # its default "recommended" mode floods warnings
        result = await self._run(argv + _as_paths(plan.files), root, self.check_timeout_s)
        return _pyright_cli_report(name, result, root)

    async def _run(
        self,
        argv: Sequence[str],
        root: Path,
        timeout_s: float,
        env: Mapping[str, str] | None = None,
        writable: Sequence[Path] = (),
    ) -> CommandResult:
        return await self.runner.run_argv(
            argv, root, timeout_s=timeout_s, env=env, writable=writable
        )

    # -- V_log -----------------------------------------------------------------------------

    async def run_tests(self, root: Path, files: Sequence[str] | None) -> SensorReport:
        """pytest over ``files`` (``None``: the whole suite), one residual per failing test."""
        targets = None if files is None else [f for f in files if f.endswith(".py")]
        if targets is not None and not targets:
            return clean(SENSOR_TESTS, "no Python test files given")
        python, src = await asyncio.to_thread(self._test_setup, root)
        tmp = await asyncio.to_thread(_private_tmpdir)
        try:
            junit = tmp / "junit.xml"
            result = await self._run(
                _pytest_argv(python, root, junit, targets or []),
                root,
                self.test_timeout_s,
                {"PYTHONPATH": str(src)} if src else None,
                writable=[tmp],  # the report's directory, outside the tree
            )
            suite = await asyncio.to_thread(read_junit, junit, root)
        finally:
            await asyncio.to_thread(shutil.rmtree, tmp, True)
        return _tests_report(result, suite, targets, python)

    def _test_setup(self, root: Path) -> tuple[str, Path | None]:
        src = root / "src"
        return self._interpreter(root), (src if src.is_dir() else None)

    # -- V_boot ----------------------------------------------------------------------------

    async def bootstrap(self, root: Path) -> SensorReport:
        """``pyproject.toml`` parses and declares a buildable project (no pyproject: fine)."""
        problems = await asyncio.to_thread(pyproject_problems, root / "pyproject.toml")
        if problems is None:
            return clean(SENSOR_BOOT, "no pyproject.toml: nothing to check")
        residuals = tuple(
            Residual(Component.BOOT, message, "pyproject", path="pyproject.toml")
            for message in problems
        )
        return SensorReport(SENSOR_BOOT, residuals, detail="pyproject.toml checked")

    # -- V_sheaf ---------------------------------------------------------------------------

    async def cross_check(self, root: Path, files: Sequence[str]) -> SensorReport:
        """Every import of a local module in ``files`` resolves to a module and a name."""
        targets = [f for f in files if f.endswith(".py")]
        problems = await asyncio.to_thread(find_import_problems, root, targets)
        residuals = tuple(
            Residual(Component.SHEAF, p.message, "imports", path=p.path, line=p.line)
            for p in problems
        )
        return SensorReport(SENSOR_SHEAF, residuals, detail=f"imports of {len(targets)} file(s)")


# --- checker routes -----------------------------------------------------------------------

LSP_CHECKER = "keel.plugins.lsp_checker"


async def _load_lsp_checker() -> None:
    """Import :mod:`keel.plugins.lsp_checker` the first time a checker runs, in a thread.

    It loads the LSP libraries (about half a second of CPU): done here, a session pays for it
    once while its event loop keeps serving, and commands that check nothing (``keel status``,
    ``keel plan``) never pay for it. Later calls find it in ``sys.modules``.
    """
    if LSP_CHECKER not in sys.modules:
        await asyncio.to_thread(importlib.import_module, LSP_CHECKER)


def _ty_server(exe: str, python: str) -> LspServer:
    from keel.plugins.lsp_checker import LspServer

    settings = {"ty": {"configuration": {"environment": {"python": python}}}}
    return LspServer("ty", (exe, "server"), settings=settings)


def _pyright_server(name: str, exe: str, python: str) -> LspServer:
    from keel.plugins.lsp_checker import LspServer

    analysis = {"autoSearchPaths": True, "typeCheckingMode": "standard"}
    settings = {
        "python": {"pythonPath": python, "analysis": analysis},
        name: {"analysis": analysis},
    }
    return LspServer(name, (exe, "--stdio"), settings=settings)


def _lsp_report(server: LspServer, outcome: LspOutcome) -> SensorReport:
    from keel.plugins.lsp_checker import to_residuals

    residuals = tuple(
        residual
        for relpath, diagnostics in sorted(outcome.diagnostics.items())
        for residual in to_residuals(server.name, relpath, diagnostics)
    )
    label = " ".join([Path(server.argv[0]).name, *server.argv[1:2]]).replace(" --stdio", "")
    detail = f"{label} (LSP): {len(outcome.diagnostics)} file(s), {outcome.mode} diagnostics"
    return SensorReport(SENSOR_CHECK, residuals, detail=detail)


def _cli_failure(name: str, result: CommandResult) -> SensorReport:
    if result.timed_out:
        return degraded(SENSOR_CHECK, f"{name} timed out: V_syn cannot be measured")
    tail = last_lines(result.output, 5)
    return degraded(
        SENSOR_CHECK, f"{name} failed (exit {result.exit_code}): {tail}: V_syn cannot be measured"
    )


def _ty_cli_report(result: CommandResult, root: Path) -> SensorReport:
    if result.timed_out or result.exit_code not in (0, 1):
        return _cli_failure("ty check", result)
    residuals = []
    for match in _TY_LINE.finditer(result.output):
        residual = diagnostic_residual(
            source="ty",
            severity=match["severity"],
            message=match["message"],
            path=relative_to_root(match["path"], root),
            line=int(match["line"]),
            rule=match["rule"],
        )
        if residual is not None:
            residuals.append(residual)
    if result.exit_code == 1 and not any(r.magnitude >= 1.0 for r in residuals):
        return _cli_failure("ty check", result)
    return SensorReport(SENSOR_CHECK, tuple(residuals), detail="ty check (CLI)")


def _pyright_cli_report(name: str, result: CommandResult, root: Path) -> SensorReport:
    if result.timed_out or result.exit_code not in (0, 1):
        return _cli_failure(name, result)
    payload = _json_object(result.output)
    if payload is None:
        return _cli_failure(name, result)
    residuals = []
    for diagnostic in payload.get("generalDiagnostics", []):
        start = diagnostic.get("range", {}).get("start", {})
        residual = diagnostic_residual(
            source=name,
            severity=str(diagnostic.get("severity", "error")),
            message=str(diagnostic.get("message", "")),
            path=relative_to_root(diagnostic.get("file", ""), root),
            line=int(start["line"]) + 1 if "line" in start else None,
            rule=diagnostic.get("rule"),
        )
        if residual is not None:
            residuals.append(residual)
    return SensorReport(SENSOR_CHECK, tuple(residuals), detail=f"{name} --outputjson (CLI)")


def _json_object(output: str) -> dict[str, Any] | None:
    start = output.find("{")
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(output[start:])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


# --- pytest -------------------------------------------------------------------------------


def _private_tmpdir() -> Path:
    """A fresh directory outside the tree for pytest's report (mode 0700)."""
    return Path(tempfile.mkdtemp(prefix="keel-pytest-"))


def _pytest_argv(python: str, root: Path, junit: Path, targets: Sequence[str]) -> list[str]:
    return [
        python,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
        "-o",
        "junit_family=xunit1",
        f"--rootdir={root}",
        "--continue-on-collection-errors",
        *_as_paths(targets),
    ]


def _as_paths(files: Sequence[str]) -> list[str]:
    """Relative paths that no tool can mistake for options (``-x.py`` becomes ``./-x.py``)."""
    return [f"./{f}" if f.startswith("-") else f for f in files]


def _tests_report(
    result: CommandResult, suite: SuiteResult | None, targets: list[str] | None, python: str
) -> SensorReport:
    if result.timed_out:
        return degraded(SENSOR_TESTS, "pytest timed out: V_log cannot be measured")
    if suite is None or result.exit_code == _USAGE_ERROR:
        return _no_junit_report(result, python)
    residuals = [
        Residual(Component.LOG, p.message, "pytest", path=p.path, line=p.line, test_id=p.test_id)
        for p in suite.problems
    ]
    if suite.tests == 0 or result.exit_code == _NO_TESTS:
        where = ", ".join(targets) if targets else "the workspace"
        residuals.append(Residual(Component.LOG, f"no tests collected in {where}", "pytest"))
    elif result.exit_code != 0 and not residuals:
        tail = last_lines(result.output, 5)
        message = f"pytest exited {result.exit_code} without a failing test: {tail}"
        residuals.append(Residual(Component.LOG, message, "pytest", exit_code=result.exit_code))
    failed = len(suite.problems)
    detail = f"pytest: {suite.tests} test(s), {failed} failed or errored"
    return SensorReport(SENSOR_TESTS, tuple(residuals), detail=detail)


def _no_junit_report(result: CommandResult, python: str) -> SensorReport:
    if "No module named pytest" in result.output:
        return degraded(SENSOR_TESTS, pytest_missing(python))
    tail = last_lines(result.output, 5)
    if result.exit_code == _USAGE_ERROR:
        errors = [line for line in result.output.splitlines() if line.startswith("ERROR:")]
        message = f"pytest usage error: {'; '.join(errors) or tail}"
        residual = Residual(Component.LOG, message, "pytest", exit_code=_USAGE_ERROR)
        return SensorReport(SENSOR_TESTS, (residual,), detail="pytest refused its arguments")
    return degraded(
        SENSOR_TESTS,
        f"pytest produced no report (exit {result.exit_code}): {tail}: V_log cannot be measured",
    )


# --- pyproject ----------------------------------------------------------------------------


def pyproject_problems(path: Path) -> list[str] | None:
    """What is wrong with ``pyproject.toml`` as project metadata; ``None`` when it is absent."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [f"pyproject.toml does not parse: {exc}"]
    return _project_problems(data.get("project")) + _build_system_problems(data.get("build-system"))


def _project_problems(project: Any) -> list[str]:
    if not isinstance(project, dict):
        return ["pyproject.toml has no [project] table"]
    problems = []
    if not _nonempty_str(project.get("name")):
        problems.append("[project] has no name")
    dynamic = project.get("dynamic", [])
    if not _nonempty_str(project.get("version")) and "version" not in dynamic:
        problems.append("[project] has no version (and does not list it in dynamic)")
    return problems


def _build_system_problems(build: Any) -> list[str]:
    if not isinstance(build, dict):
        return ["pyproject.toml has no [build-system] table"]
    problems = []
    requires = build.get("requires")
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        problems.append("[build-system] has no requires list")
    if not _nonempty_str(build.get("build-backend")):
        problems.append("[build-system] has no build-backend")
    return problems


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


__all__ = [
    "DEFAULT_CHECKERS",
    "SENSOR_BOOT",
    "SENSOR_CHECK",
    "SENSOR_SHEAF",
    "SENSOR_TESTS",
    "PythonPlugin",
    "pyproject_problems",
    "python_command_allowed",
]
