"""Shared helpers for the plugin tests: real temporary trees, written file by file."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

WriteTree = Callable[[Mapping[str, str]], Path]


@pytest.fixture
def write_tree(tmp_path: Path) -> WriteTree:
    """Write ``{relative path: source}`` (dedented) under ``tmp_path/project``; return the root."""
    root = tmp_path / "project"
    root.mkdir()

    def write(files: Mapping[str, str]) -> Path:
        for relpath, text in files.items():
            path = root / relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return root

    return write


def is_gone(pid: int, within_s: float = 5.0) -> bool:
    """True when ``pid`` stops running (exits, or is a zombie nobody reaped) within ``within_s``.

    SIGKILL is delivered asynchronously: on a loaded machine the victim takes a moment to die.
    """
    deadline = time.monotonic() + within_s
    while not _stopped(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _stopped(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")
