"""The project's own environment: the interpreter its tests run in, Rust's caches.

A project's dependencies live in its own environment, not in Keel's: checks run in Keel's
interpreter would fail every third-party import. So the Python plugin runs
``<interpreter> -m pytest`` and points its checker at the project's interpreter, chosen here.

The project's ``.venv`` is usually git-ignored, so it is never inside a node's sandbox (an
export of the committed tree): it is found and used from the real workspace path.

*Python*, first found wins:

1. ``[python] interpreter`` in ``keel.toml`` (absolute, relative to the workspace, or a
   bare name found on ``PATH``); it must exist, else a :class:`~keel.engine.ports.ConfigError`;
2. ``<workspace>/.venv``, then ``<workspace>/venv``;
3. pdm's ``.pdm-python`` file; uv's ``UV_PROJECT_ENVIRONMENT``; poetry's cached environment
   (``<cache>/virtualenvs/<name>-<hash>-py*``, the hash of the workspace path as poetry
   computes it); hatch's (``[tool.hatch.envs.default] path``, or exactly one environment of
   the project under hatch's data directory);
4. ``VIRTUAL_ENV``;
5. the interpreter Keel runs in, which ships pytest and ty.

The chosen interpreter is asked once (a few milliseconds) for its prefixes, its ``sys.path``
and whether it can import pytest; the directories it reads from are :attr:`readonly_paths`,
the set an OS sandbox must mount read-only for it to work.

*Rust*: cargo's home (``CARGO_HOME``, else ``~/.cargo``: the registry cache) and rustup's are
read-only; compiled dependencies go to one target directory per workspace,
``.keel/cargo-target``, shared by every attempt and session instead of rebuilt per sandbox.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.engine.ports import ConfigError
from keel.process import SubprocessRunner, ToolRunner

#: Where each detected interpreter came from, as ``source`` says it.
KEEL_SOURCE = "keel"
CONFIG_SOURCE = "[python] interpreter"

_PROBE = (
    "import importlib.util, json, sys\n"
    "spec = importlib.util.find_spec('pytest')\n"
    "print(json.dumps({'prefix': sys.prefix, 'base_prefix': sys.base_prefix,"
    " 'version': '%d.%d.%d' % sys.version_info[:3], 'path': sys.path,"
    " 'pytest': None if spec is None else spec.origin}))\n"
)
_PROBE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class PythonEnvironment:
    """The interpreter the Python plugin runs tests with and points its checker at.

    ``source`` says how it was found (``.venv``, ``venv``, ``pdm``, ``uv``, ``poetry``,
    ``hatch``, ``VIRTUAL_ENV``, ``[python] interpreter`` or ``keel``); ``pytest`` whether it
    can import pytest (``None``: it could not be asked); ``notes`` are problems worth a
    warning, each naming its fix.
    """

    interpreter: Path
    source: str
    readonly_paths: tuple[Path, ...] = ()
    prefix: Path | None = None
    version: str = ""
    pytest: bool | None = None
    notes: tuple[str, ...] = ()
    #: A virtual environment (its ``sys.prefix`` differs from ``sys.base_prefix``).
    virtual: bool = False

    @property
    def bin_dir(self) -> Path:
        return self.interpreter.parent

    def record(self) -> dict[str, Any]:
        """JSON-ready, for events and ``keel status``."""
        return {
            "interpreter": str(self.interpreter),
            "source": self.source,
            "version": self.version,
            "pytest": self.pytest,
        }


@dataclass(frozen=True)
class RustEnvironment:
    """cargo's caches: the homes read-only, one shared target directory written."""

    cargo_home: Path
    rustup_home: Path
    target_dir: Path

    @property
    def readonly_paths(self) -> tuple[Path, ...]:
        return (self.cargo_home, self.rustup_home)

    @property
    def writable_paths(self) -> tuple[Path, ...]:
        return (self.target_dir,)

    def env(self) -> dict[str, str]:
        return {"CARGO_HOME": str(self.cargo_home), "RUSTUP_HOME": str(self.rustup_home)}

    def record(self) -> dict[str, Any]:
        return {
            "cargo_home": str(self.cargo_home),
            "rustup_home": str(self.rustup_home),
            "target_dir": str(self.target_dir),
        }


@dataclass(frozen=True)
class ProjectEnvironment:
    """Every language's environment of one workspace, and what a sandbox must mount."""

    python: PythonEnvironment | None = None
    rust: RustEnvironment | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def readonly_paths(self) -> tuple[Path, ...]:
        paths: list[Path] = []
        if self.python is not None:
            paths += self.python.readonly_paths
        if self.rust is not None:
            paths += self.rust.readonly_paths
        return tuple(dict.fromkeys(paths))

    @property
    def writable_paths(self) -> tuple[Path, ...]:
        return self.rust.writable_paths if self.rust is not None else ()

    def record(self) -> dict[str, Any]:
        """``{"python": {...}, "rust": {...}}`` for the languages present."""
        out: dict[str, Any] = {}
        if self.python is not None:
            out["python"] = self.python.record()
        if self.rust is not None:
            out["rust"] = self.rust.record()
        return out

    def warnings(self) -> list[str]:
        python_notes = self.python.notes if self.python is not None else ()
        return [*self.notes, *python_notes]


# --- Python -------------------------------------------------------------------------------


def _venv_python(directory: Path) -> Path | None:
    for name in ("bin/python", "bin/python3", "Scripts/python.exe"):
        candidate = directory / name
        if candidate.exists():
            return candidate
    return None


def _project_name(workspace: Path) -> str | None:
    try:
        data = tomllib.loads((workspace / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    tool = data.get("tool", {})
    for table in (tool.get("poetry", {}) if isinstance(tool, dict) else {}, data.get("project")):
        if isinstance(table, dict) and isinstance(table.get("name"), str):
            return str(table["name"])
    return None


def _pyproject_tool(workspace: Path, *keys: str) -> Any:
    try:
        data: Any = tomllib.loads((workspace / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    for key in ("tool", *keys):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def poetry_env_name(name: str, workspace: Path) -> str:
    """poetry's directory name for a project's environment, without the ``-pyX.Y`` suffix."""
    sanitized = re.sub(r'[ $`!*@"\\\r\n\t]', "_", name.lower())[:42]
    cwd = os.path.normcase(os.path.realpath(workspace))
    digest = base64.urlsafe_b64encode(hashlib.sha256(cwd.encode()).digest()).decode()[:8]
    return f"{sanitized}-{digest}"


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or str(Path.home()))


def _poetry(workspace: Path, env: Mapping[str, str]) -> Path | None:
    name = _project_name(workspace)
    uses_poetry = (workspace / "poetry.lock").exists() or _pyproject_tool(workspace, "poetry")
    if name is None or not uses_poetry:
        return None
    if env.get("POETRY_VIRTUALENVS_PATH"):
        base = Path(env["POETRY_VIRTUALENVS_PATH"])
    else:
        cache = Path(env.get("XDG_CACHE_HOME") or _home(env) / ".cache")
        base = Path(env.get("POETRY_CACHE_DIR") or cache / "pypoetry") / "virtualenvs"
    for directory in sorted(base.glob(poetry_env_name(name, workspace) + "-py*"), reverse=True):
        found = _venv_python(directory)
        if found:
            return found
    return None


def _hatch(workspace: Path, env: Mapping[str, str]) -> Path | None:
    configured = _pyproject_tool(workspace, "hatch", "envs", "default", "path")
    if isinstance(configured, str) and configured:
        found = _venv_python(workspace / configured)
        if found:
            return found
    name = _project_name(workspace)
    if name is None or _pyproject_tool(workspace, "hatch") is None:
        return None
    data = Path(env.get("XDG_DATA_HOME") or _home(env) / ".local" / "share")
    candidates = [
        p
        for d in (data / "hatch" / "env" / "virtual" / name).glob(f"*/{name}")
        if (p := _venv_python(d))
    ]
    return candidates[0] if len(candidates) == 1 else None


def _pdm(workspace: Path) -> Path | None:
    try:
        text = (workspace / ".pdm-python").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    candidate = Path(text) if Path(text).is_absolute() else workspace / text
    return candidate if text and candidate.exists() else None


def _uv(workspace: Path, env: Mapping[str, str]) -> Path | None:
    configured = env.get("UV_PROJECT_ENVIRONMENT")
    if not configured:
        return None
    directory = Path(configured) if Path(configured).is_absolute() else workspace / configured
    return _venv_python(directory)


def find_python(
    workspace: Path, env: Mapping[str, str], configured: str | None = None
) -> tuple[Path, str, list[str]]:
    """The project's interpreter, how it was found, and notes (blocking: reads the disk)."""
    notes: list[str] = []
    if configured:
        path = Path(configured).expanduser()
        path = path if path.is_absolute() else workspace / path
        if path.is_dir():
            path = _venv_python(path) or path / "bin" / "python"
        on_path = shutil.which(configured, path=env.get("PATH")) if "/" not in configured else None
        if not path.exists() and on_path:
            path = Path(on_path)  # a bare name, e.g. "python3.12"
        if not path.exists():
            raise ConfigError(
                f"[python] interpreter = {configured!r}: {path} does not exist "
                "(give the project's python, e.g. .venv/bin/python, or remove the key)"
            )
        return path, CONFIG_SOURCE, notes
    for name in (".venv", "venv"):
        directory = workspace / name
        if directory.is_dir():
            found = _venv_python(directory)
            if found:
                return found, name, notes
            notes.append(
                f"{directory} has no working bin/python (a broken virtual environment?): "
                f"recreate it or set [python] interpreter in keel.toml"
            )
    managed: tuple[tuple[str, Callable[[], Path | None]], ...] = (
        ("pdm", lambda: _pdm(workspace)),
        ("uv", lambda: _uv(workspace, env)),
        ("poetry", lambda: _poetry(workspace, env)),
        ("hatch", lambda: _hatch(workspace, env)),
    )
    for source, finder in managed:
        found = finder()
        if found:
            return found, source, notes
    active = env.get("VIRTUAL_ENV")
    if active:
        found = _venv_python(Path(active))
        if found:
            return found, "VIRTUAL_ENV", notes
    return Path(sys.executable), KEEL_SOURCE, notes


def _within(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _readonly_dirs(
    interpreter: Path, probe: Mapping[str, Any], workspace: Path
) -> tuple[Path, ...]:
    """The directories the interpreter reads from: its prefixes and ``sys.path`` outside them."""
    roots: list[Path] = []

    def add(path: Path) -> None:
        resolved = path.resolve() if path.exists() else path
        if (
            not path.exists()
            or _within(resolved, roots)
            or _within(resolved, [workspace.resolve()])
        ):
            return
        roots.append(resolved)

    for key in ("prefix", "base_prefix"):
        if probe.get(key):
            add(Path(str(probe[key])))
    for entry in probe.get("path") or []:
        if isinstance(entry, str) and entry:
            add(Path(entry))
    # the interpreter itself may be a symlink out of its prefix (venvs link to the base)
    add(interpreter.resolve().parent)
    prefix = Path(str(probe.get("prefix") or interpreter.parent.parent))
    if _within(prefix.resolve(), [workspace.resolve()]):
        roots.insert(0, prefix)  # a venv inside the workspace: mounted by its own path
    return tuple(dict.fromkeys(roots))


async def probe_python(
    workspace: Path,
    interpreter: Path,
    source: str,
    notes: Iterable[str] = (),
    runner: ToolRunner | None = None,
) -> PythonEnvironment:
    """Ask ``interpreter`` for its prefixes, ``sys.path`` and pytest; never raises."""
    runner = runner or SubprocessRunner()
    notes = list(notes)
    cwd = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="keel-probe-"))
    try:
        result = await runner.run_argv(
            [str(interpreter), "-c", _PROBE], cwd, timeout_s=_PROBE_TIMEOUT_S
        )
    finally:
        await asyncio.to_thread(shutil.rmtree, cwd, True)
    probe: dict[str, Any] = {}
    if result.ok:
        lines = result.output.strip().splitlines()
        try:
            loaded = json.loads(lines[-1]) if lines else None
        except json.JSONDecodeError:
            loaded = None
        probe = loaded if isinstance(loaded, dict) else {}
    if not probe:
        tail = " ".join(result.output.strip().splitlines()[-2:])[:300]
        notes.append(
            f"the project's interpreter {interpreter} ({source}) did not start "
            f"(exit {result.exit_code}{': ' + tail if tail else ''}): fix or recreate it, "
            "or set [python] interpreter in keel.toml"
        )
        prefix = interpreter.parent.parent
        return PythonEnvironment(interpreter, source, (prefix,), prefix, "", None, tuple(notes))
    has_pytest = probe.get("pytest") is not None
    if not has_pytest:
        notes.append(pytest_missing(str(interpreter)))
    return PythonEnvironment(
        interpreter=interpreter,
        source=source,
        readonly_paths=await asyncio.to_thread(_readonly_dirs, interpreter, probe, workspace),
        prefix=Path(str(probe["prefix"])) if probe.get("prefix") else None,
        version=str(probe.get("version", "")),
        pytest=has_pytest,
        notes=tuple(notes),
        virtual=bool(probe.get("prefix")) and probe.get("prefix") != probe.get("base_prefix"),
    )


def pytest_missing(interpreter: str) -> str:
    """The one message for "pytest is not installed there", naming both fixes."""
    return (
        f"pytest is not installed for {interpreter}: V_log cannot be measured; "
        f"install it there (`{interpreter} -m pip install pytest`) "
        "or set [python] interpreter in keel.toml to one that has it"
    )


# --- Rust ---------------------------------------------------------------------------------


def rust_environment(workspace: Path, env: Mapping[str, str]) -> RustEnvironment:
    home = _home(env)
    return RustEnvironment(
        cargo_home=Path(env.get("CARGO_HOME") or home / ".cargo"),
        rustup_home=Path(env.get("RUSTUP_HOME") or home / ".rustup"),
        target_dir=workspace / ".keel" / "cargo-target",
    )


# --- both ---------------------------------------------------------------------------------


async def detect_environment(
    workspace: Path,
    languages: Iterable[str],
    env: Mapping[str, str],
    *,
    interpreter: str | None = None,
    runner: ToolRunner | None = None,
) -> ProjectEnvironment:
    """The environment of each of ``languages`` (``"python"``, ``"rust"``) in ``workspace``.

    Raises :class:`~keel.engine.ports.ConfigError` for a configured interpreter that does
    not exist; everything else found wrong becomes a note (a warning event).
    """
    wanted = set(languages)
    python = None
    if "python" in wanted:
        path, source, notes = await asyncio.to_thread(find_python, workspace, env, interpreter)
        python = await probe_python(workspace, path, source, notes, runner)
    rust = rust_environment(workspace, env) if "rust" in wanted else None
    return ProjectEnvironment(python=python, rust=rust)


__all__ = [
    "CONFIG_SOURCE",
    "KEEL_SOURCE",
    "ProjectEnvironment",
    "PythonEnvironment",
    "RustEnvironment",
    "detect_environment",
    "find_python",
    "poetry_env_name",
    "probe_python",
    "pytest_missing",
    "rust_environment",
]
