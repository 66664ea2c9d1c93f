"""Which language plugins a session needs: what the workspace holds first, then what the task says.

An existing workspace is the best evidence (a ``Cargo.toml`` means Rust, whatever the task
wording). An empty workspace, the usual start of "create a calculator package", has only the
task text, so keywords decide. With no evidence at all, Python is assumed and the reason says
so. The order of the returned plugins is always Python, then Rust, so that sessions are
reproducible.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from keel.engine.ports import LanguagePlugin
from keel.plugins.environment import ProjectEnvironment
from keel.plugins.python import PythonPlugin
from keel.plugins.rust import RustPlugin
from keel.process import ToolRunner

log = logging.getLogger(__name__)

#: The canonical order of languages in every result.
LANGUAGES: tuple[str, ...] = ("python", "rust")

_PYTHON_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", "requirements.txt")
_KEYWORDS: dict[str, re.Pattern[str]] = {
    "python": re.compile(r"\b(python\d?(\.\d+)?|pytest|django|flask|fastapi|pandas|numpy|pip)\b"),
    "rust": re.compile(r"\b(rust|cargo)\b"),
}
_FACTORIES: dict[str, Callable[[ToolRunner | None, ProjectEnvironment], LanguagePlugin]] = {
    "python": lambda runner, env: PythonPlugin(
        runner, python=env.python.interpreter if env.python else None
    ),
    "rust": lambda runner, env: RustPlugin(
        runner,
        target_dir=env.rust.target_dir if env.rust else None,
        extra_env=env.rust.env() if env.rust else None,
    ),
}


@dataclass(frozen=True)
class Detection:
    """The languages chosen and, in one line, why."""

    languages: tuple[str, ...]
    reason: str


def _workspace_languages(workspace: Path) -> set[str]:
    found: set[str] = set()
    if not workspace.is_dir():
        return found
    if (workspace / "Cargo.toml").is_file():
        found.add("rust")
    if any((workspace / marker).is_file() for marker in _PYTHON_MARKERS):
        found.add("python")
    elif any(p.is_file() for p in workspace.glob("*.py")):
        found.add("python")
    return found


def detect_languages(workspace: Path, task: str) -> Detection:
    """The languages of ``workspace`` (blocking: reads the directory) or else of ``task``."""
    found = _workspace_languages(workspace)
    if found:
        languages = tuple(lang for lang in LANGUAGES if lang in found)
        return Detection(languages, f"workspace files say {', '.join(languages)}")
    text = task.lower()
    found = {lang for lang, pattern in _KEYWORDS.items() if pattern.search(text)}
    if found:
        languages = tuple(lang for lang in LANGUAGES if lang in found)
        return Detection(languages, f"the task mentions {', '.join(languages)}")
    return Detection(("python",), "no language evident in the workspace or task: assuming python")


def detect_plugins(
    workspace: Path,
    task: str,
    *,
    runner: ToolRunner | None = None,
    environment: ProjectEnvironment | None = None,
) -> list[LanguagePlugin]:
    """One plugin per detected language (see :func:`detect_languages`), in a stable order.

    ``environment`` is the project's own (its interpreter, cargo's caches); without it the
    plugins use their defaults (Keel's interpreter, cargo's ``target/`` in the tree).
    """
    detection = detect_languages(workspace, task)
    log.info("language plugins: %s (%s)", ", ".join(detection.languages), detection.reason)
    env = environment or ProjectEnvironment()
    return [_FACTORIES[lang](runner, env) for lang in detection.languages]


def plugin_for(path: str, plugins: Sequence[LanguagePlugin]) -> LanguagePlugin | None:
    """The first plugin that owns ``path`` (``None`` when no plugin does)."""
    return next((plugin for plugin in plugins if plugin.owns_file(path)), None)
