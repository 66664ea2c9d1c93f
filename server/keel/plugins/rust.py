"""The Rust plugin: cargo check for V_syn, cargo test for V_log, Cargo.toml for V_boot.

*Check.* ``cargo check --message-format=json --quiet --all-targets`` (all targets, so that
type errors in ``tests/`` and ``#[cfg(test)]`` modules count). Errors anywhere in the crate are
reported (one broken file stops the compiler before it reaches the others); warnings only for
the files asked about.

*Tests.* ``cargo test --no-fail-fast --color never``, deliberately without ``--quiet``: cargo's
``Running tests/it.rs (...)`` lines say which target each test belongs to, which makes test ids
unique across targets (``tests/it.rs::bad``, ``src/lib.rs::tests::bad``). Each ``FAILED`` test
becomes one residual carrying its panic message and location; a crate that does not compile is
one residual with the first compiler error.

*Sheaf.* ``cross_check`` is an ok report: cargo check already resolves every ``use`` and
``mod`` across the whole crate, so a second pass would only count the same errors twice.

*Target directory.* By default cargo's own ``target/`` under the crate root: sandboxes are thrown
away, and ``target/`` is what every Rust project already ignores. The engine may pass
``target_dir`` (``CARGO_TARGET_DIR``) to share compiled dependencies between the attempts at one
workspace; cargo's lock then serialises concurrent builds in it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from keel.engine.models import CommandResult, Component, Residual, SensorReport
from keel.plugins.base import (
    ToolFinder,
    clean,
    degraded,
    diagnostic_residual,
    find_tool,
    first_lines,
    last_lines,
    relative_to_root,
)
from keel.process import SubprocessRunner, ToolRunner

SENSOR_CHECK = "rust.check"
SENSOR_TESTS = "rust.tests"
SENSOR_BOOT = "rust.boot"
SENSOR_SHEAF = "rust.sheaf"

_PLUGIN_OUTPUT_CAP = 4 * 1024 * 1024
_PASSED_ENV = ("CARGO_HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN")
_SHELL_META = re.compile(r"[;&|<>`$\n\r]")
_CARGO_SUBCOMMANDS = frozenset({"check", "test", "build", "clippy", "fmt"})
_DENIED_OPTIONS = ("--fix", "--allow-dirty", "--allow-staged", "--config", "-Z")

_RUNNING = re.compile(r"^\s*Running (?:unittests )?(?P<target>\S+)")
_DOC_TESTS = re.compile(r"^\s*Doc-tests (?P<crate>\S+)")
_RUNNING_COUNT = re.compile(r"^running (?P<count>\d+) tests?$")
_TEST_FAILED = re.compile(r"^test (?P<name>.+?) \.\.\. FAILED$")
_TEST_FAILED_TERSE = re.compile(r"^(?P<name>\S.*?) --- FAILED$")
_STDOUT_HEADER = re.compile(r"^---- (?P<name>.+?) stdout ----$")
_PANIC = re.compile(r"panicked at (?P<path>[^:\s]+):(?P<line>\d+):\d+:?$")
_ERROR_HEAD = re.compile(r"^error(\[E\d+\])?: (?P<message>.*)$")
_ERROR_ARROW = re.compile(r"^\s*--> (?P<path>[^:\s]+):(?P<line>\d+):\d+")
_CARGO_SUMMARY_ERRORS = ("test failed", "could not compile", "targets failed", "1 target failed")


def find_cargo(name: str = "cargo") -> str | None:
    """cargo beside Keel, on ``PATH``, in ``$CARGO_HOME/bin`` or in ``~/.cargo/bin``."""
    extra = [Path(os.environ["CARGO_HOME"]) / "bin"] if "CARGO_HOME" in os.environ else []
    extra.append(Path.home() / ".cargo" / "bin")
    return find_tool(name, extra_dirs=extra)


def rust_command_allowed(command: str) -> bool:
    """See :meth:`RustPlugin.command_allowed`."""
    if _SHELL_META.search(command):
        return False
    try:
        argv = shlex.split(command)
    except ValueError:
        return False
    if len(argv) < 2 or argv[0] != "cargo" or argv[1] not in _CARGO_SUBCOMMANDS:
        return False
    args = argv[2:]
    if any(_denied(arg) for arg in args):
        return False
    return argv[1] != "fmt" or "--check" in args


def _denied(arg: str) -> bool:
    if arg.startswith("-Z"):
        return True
    return any(arg == option or arg.startswith(option + "=") for option in _DENIED_OPTIONS)


class RustPlugin:
    """The :class:`~keel.engine.ports.LanguagePlugin` for Rust (cargo crates and workspaces).

    ``tool_finder`` locates cargo (default: beside Keel, ``PATH``, ``~/.cargo/bin``);
    ``target_dir`` sets ``CARGO_TARGET_DIR`` (default: cargo's ``target/`` in the tree);
    ``offline`` adds ``--offline`` so a crate with uncached dependencies fails fast instead of
    waiting on the network; ``extra_env`` (``CARGO_HOME``, ``RUSTUP_HOME`` of the project's
    environment) is set for every cargo run.
    """

    def __init__(
        self,
        runner: ToolRunner | None = None,
        *,
        tool_finder: ToolFinder = find_cargo,
        target_dir: Path | None = None,
        offline: bool = False,
        extra_env: Mapping[str, str] | None = None,
        check_timeout_s: float = 600.0,
        test_timeout_s: float = 900.0,
    ) -> None:
        self.runner: ToolRunner = runner or SubprocessRunner(output_cap_bytes=_PLUGIN_OUTPUT_CAP)
        self.find_tool = tool_finder
        self.target_dir = target_dir
        self.offline = offline
        self.extra_env = dict(extra_env or {})
        self.check_timeout_s = check_timeout_s
        self.test_timeout_s = test_timeout_s

    @property
    def name(self) -> str:
        return "rust"

    def owns_file(self, path: str) -> bool:
        pure = PurePosixPath(path)
        return pure.suffix == ".rs" or pure.name == "Cargo.toml"

    def is_test_file(self, path: str) -> bool:
        pure = PurePosixPath(path)
        return pure.suffix == ".rs" and "tests" in pure.parts[:-1]

    def command_allowed(self, command: str) -> bool:
        """True only for ``cargo check``, ``cargo test``, ``cargo build``, ``cargo clippy``
        and ``cargo fmt --check``: one command, no shell metacharacters, no ``+toolchain``,
        and none of ``--fix``, ``--allow-dirty``, ``--allow-staged``, ``--config``, ``-Z``.
        """
        return rust_command_allowed(command)

    # -- shared ----------------------------------------------------------------------------

    async def _cargo(self, args: Sequence[str], root: Path, timeout_s: float) -> CommandResult:
        cargo = self.find_tool("cargo")
        assert cargo is not None  # callers check first
        argv = [cargo, *args, *(["--offline"] if self.offline else [])]
        # A shared target directory is outside the tree: the sandbox must let cargo write it.
        writable = [] if self.target_dir is None else [self.target_dir]
        for path in writable:
            await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
        return await self.runner.run_argv(
            argv, root, timeout_s=timeout_s, env=self._env(cargo), writable=writable
        )

    def _env(self, cargo: str) -> dict[str, str]:
        """cargo's directory first on PATH (rustc, clippy-driver), its homes, the target dir."""
        base_path = self.runner.environment().get("PATH", "")
        env = {"PATH": os.pathsep.join(filter(None, [str(Path(cargo).parent), base_path]))}
        env.update({key: os.environ[key] for key in _PASSED_ENV if key in os.environ})
        env.update(self.extra_env)
        env["RUST_BACKTRACE"] = "0"
        env["CARGO_TERM_COLOR"] = "never"
        if self.target_dir is not None:
            env["CARGO_TARGET_DIR"] = str(self.target_dir)
        return env

    def _unmeasurable(self, sensor: str, component: str, has_manifest: bool) -> SensorReport | None:
        if self.find_tool("cargo") is None:
            return degraded(sensor, f"cargo not found: {component} cannot be measured")
        if not has_manifest:
            return degraded(sensor, f"no Cargo.toml at the root: {component} cannot be measured")
        return None

    # -- V_syn -----------------------------------------------------------------------------

    async def check(self, root: Path, files: Sequence[str]) -> SensorReport:
        """``cargo check`` diagnostics: errors anywhere in the crate, warnings in ``files``."""
        owned = [f for f in files if self.owns_file(f)]
        if not owned:
            return clean(SENSOR_CHECK, "no Rust files to check")
        has_manifest = await asyncio.to_thread((root / "Cargo.toml").is_file)
        problem = self._unmeasurable(SENSOR_CHECK, "V_syn", has_manifest)
        if problem is not None:
            return problem
        args = ["check", "--message-format=json", "--quiet", "--all-targets"]
        result = await self._cargo(args, root, self.check_timeout_s)
        if result.timed_out:
            return degraded(SENSOR_CHECK, "cargo check timed out: V_syn cannot be measured")
        residuals = _check_residuals(result, root, set(owned))
        return SensorReport(SENSOR_CHECK, tuple(residuals), detail="cargo check (JSON)")

    # -- V_log -----------------------------------------------------------------------------

    async def run_tests(self, root: Path, files: Sequence[str] | None) -> SensorReport:
        """``cargo test`` (only the named ``tests/*.rs`` targets when all files are such)."""
        if files is not None and not any(f.endswith(".rs") for f in files):
            return clean(SENSOR_TESTS, "no Rust test files given")
        has_manifest = await asyncio.to_thread((root / "Cargo.toml").is_file)
        problem = self._unmeasurable(SENSOR_TESTS, "V_log", has_manifest)
        if problem is not None:
            return problem
        args = ["test", "--no-fail-fast", "--color", "never", *_test_selection(files)]
        result = await self._cargo(args, root, self.test_timeout_s)
        if result.timed_out:
            return degraded(SENSOR_TESTS, "cargo test timed out: V_log cannot be measured")
        return _tests_report(result, files)

    # -- V_boot ----------------------------------------------------------------------------

    async def bootstrap(self, root: Path) -> SensorReport:
        """``Cargo.toml`` parses and declares a ``[package]`` (with a name) or a ``[workspace]``."""
        problems = await asyncio.to_thread(manifest_problems, root / "Cargo.toml")
        if problems is None:
            return clean(SENSOR_BOOT, "no Cargo.toml: nothing to check")
        residuals = tuple(
            Residual(Component.BOOT, message, "Cargo.toml", path="Cargo.toml")
            for message in problems
        )
        return SensorReport(SENSOR_BOOT, residuals, detail="Cargo.toml checked")

    # -- V_sheaf ---------------------------------------------------------------------------

    async def cross_check(self, root: Path, files: Sequence[str]) -> SensorReport:
        """Nothing beyond V_syn: ``cargo check`` already resolves every path in the crate."""
        return clean(SENSOR_SHEAF, "covered by cargo check over the whole crate (V_syn)")


# --- cargo check --------------------------------------------------------------------------


def _json_lines(output: str) -> Iterator[dict[str, Any] | str]:
    for line in output.splitlines():
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                yield line
                continue
            if isinstance(value, dict):
                yield value
                continue
        yield line


def _message_residual(message: Mapping[str, Any], root: Path) -> Residual | None:
    spans = message.get("spans") or []
    primary = next((s for s in spans if s.get("is_primary")), spans[0] if spans else None)
    text = str(message.get("message", ""))
    if primary is None:
        return None  # "aborting due to ..." and similar summaries
    if primary.get("label"):
        text = f"{text}: {primary['label']}"
    code = message.get("code") or {}
    return diagnostic_residual(
        source="cargo",
        severity=str(message.get("level", "")),
        message=text,
        path=relative_to_root(str(primary.get("file_name", "")), root),
        line=int(primary.get("line_start", 0)) or None,
        rule=code.get("code") if isinstance(code, dict) else None,
    )


def _check_residuals(result: CommandResult, root: Path, files: set[str]) -> list[Residual]:
    residuals: dict[tuple[str, str | None, int | None], Residual] = {}
    text_errors: list[str] = []
    for item in _json_lines(result.output):
        if isinstance(item, str):
            if item.startswith("error") and not any(s in item for s in _CARGO_SUMMARY_ERRORS):
                text_errors.append(item)
            continue
        if item.get("reason") != "compiler-message":
            continue
        residual = _message_residual(item.get("message") or {}, root)
        if residual is None or (residual.magnitude < 1.0 and residual.path not in files):
            continue
        residuals.setdefault((residual.message, residual.path, residual.line), residual)
    out = list(residuals.values())
    if result.exit_code != 0 and not any(r.magnitude >= 1.0 for r in out):
        message = first_lines("\n".join(text_errors)) or last_lines(result.output, 5)
        out.append(
            Residual(
                Component.SYN, f"cargo check failed: {message}", "cargo", exit_code=result.exit_code
            )
        )
    return out


# --- cargo test ---------------------------------------------------------------------------


def _test_selection(files: Sequence[str] | None) -> list[str]:
    """``--test name`` per ``tests/name.rs`` when every file is one; else the whole suite."""
    if not files:
        return []
    rust = [PurePosixPath(f) for f in files if f.endswith(".rs")]
    if not all(len(p.parts) == 2 and p.parts[0] == "tests" for p in rust):
        return []
    return [arg for p in rust for arg in ("--test", p.stem)]


@dataclass
class _TestRun:
    """What ``cargo test`` printed, grouped per target."""

    tests_run: int = 0
    failed: dict[str, None] = field(default_factory=dict)  # test ids, in order
    panics: dict[str, tuple[str, str | None, int | None]] = field(default_factory=dict)


def _parse_test_output(output: str) -> _TestRun:
    run = _TestRun()
    target = "?"
    current: str | None = None
    body: list[str] = []
    for line in output.splitlines():
        if match := _RUNNING.match(line):
            target = match["target"]
        elif match := _DOC_TESTS.match(line):
            target = f"doc-tests {match['crate']}"
        elif match := _RUNNING_COUNT.match(line):
            run.tests_run += int(match["count"])
        elif match := _TEST_FAILED.match(line) or _TEST_FAILED_TERSE.match(line):
            run.failed.setdefault(f"{target}::{match['name']}")
        if match := _STDOUT_HEADER.match(line):
            _close_panic(run, current, body)
            current, body = f"{target}::{match['name']}", []
        elif current is not None and line.strip() == "failures:":
            _close_panic(run, current, body)
            current, body = None, []
        elif current is not None:
            body.append(line)
    _close_panic(run, current, body)
    return run


def _close_panic(run: _TestRun, test_id: str | None, body: list[str]) -> None:
    if test_id is None:
        return
    message_lines: list[str] = []
    path: str | None = None
    line_no: int | None = None
    for index, line in enumerate(body):
        if match := _PANIC.search(line):
            path, line_no = match["path"], int(match["line"])
            message_lines = [
                text for text in body[index + 1 :] if not text.startswith("note: run with")
            ]
            break
    message = first_lines("\n".join(message_lines)) or first_lines("\n".join(body)) or "failed"
    run.panics[test_id] = (message, path, line_no)


def _compile_error(output: str) -> Residual | None:
    lines = output.splitlines()
    for index, line in enumerate(lines):
        match = _ERROR_HEAD.match(line)
        if match is None or any(s in line for s in _CARGO_SUMMARY_ERRORS):
            continue
        path, line_no = None, None
        for follow in lines[index + 1 : index + 4]:
            if arrow := _ERROR_ARROW.match(follow):
                path, line_no = arrow["path"], int(arrow["line"])
                break
        return Residual(
            Component.LOG,
            f"does not compile: {line.strip()}",
            "cargo test",
            path=path,
            line=line_no,
        )
    return None


def _tests_report(result: CommandResult, files: Sequence[str] | None) -> SensorReport:
    run = _parse_test_output(result.output)
    residuals = []
    for test_id in dict.fromkeys([*run.failed, *run.panics]):
        message, path, line = run.panics.get(test_id, ("failed", None, None))
        residuals.append(
            Residual(Component.LOG, message, "cargo test", path=path, line=line, test_id=test_id)
        )
    if result.exit_code != 0 and not residuals:
        compile_error = _compile_error(result.output)
        tail = last_lines(result.output, 5)
        residuals.append(
            compile_error
            or Residual(
                Component.LOG,
                f"cargo test exited {result.exit_code}: {tail}",
                "cargo test",
                exit_code=result.exit_code,
            )
        )
    elif run.tests_run == 0 and not residuals:
        where = ", ".join(files) if files else "the crate"
        residuals.append(Residual(Component.LOG, f"no tests ran in {where}", "cargo test"))
    detail = f"cargo test: {run.tests_run} test(s), {len(run.failed)} failed"
    return SensorReport(SENSOR_TESTS, tuple(residuals), detail=detail)


# --- Cargo.toml ---------------------------------------------------------------------------


def manifest_problems(path: Path) -> list[str] | None:
    """What is wrong with ``Cargo.toml``; ``None`` when there is none.

    A ``[package]`` needs a ``name``; its ``version`` may be absent (cargo defaults it since
    1.75) but must otherwise be a string or ``{ workspace = true }``. A virtual manifest needs
    a ``[workspace]`` table.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [f"Cargo.toml does not parse: {exc}"]
    package = data.get("package")
    if package is None:
        if isinstance(data.get("workspace"), dict):
            return []
        return ["Cargo.toml has neither [package] nor [workspace]"]
    if not isinstance(package, dict):
        return ["[package] is not a table"]
    problems = []
    name = package.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append("[package] has no name")
    version = package.get("version")
    if version is not None and not isinstance(version, str | dict):
        problems.append("[package] version is neither a string nor { workspace = true }")
    return problems
