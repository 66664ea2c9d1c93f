"""pytest-lsp fixtures: ``python -m keel serve`` driven like an editor, against a fake model.

Every test runs once per client preset (VS Code 1.65, Neovim latest, Neovim 0.7). The server
is a real subprocess; its model is the fake OpenAI server of ``tests/fakes`` answering from
transcript entries; the workspace is a fresh git repository; the client is the test editor
of ``tests/e2e/editor.py``. Any error the client sees fails the test.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types as T
from pytest_lsp import ClientServerConfig, client_capabilities

from tests.e2e.editor import (
    GIT_ENV,
    KEEL_SERVE,
    Keel,
    KeelTestClient,
    git,
    install_handlers,
    make_client,
)
from tests.fakes.model_server import FakeModelServer

PRESETS = ["visual-studio-code", "neovim", "neovim@v0.7"]
OPTIONS: dict[str, Any] = {
    "models": {"default": "openai:gpt-4.1"},
    "engine": {"mode": "cautious", "speculate": False, "max_attempts": 1},
}


@pytest.fixture(params=PRESETS)
def preset(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "README.md").write_text("# demo\n")
    git(root, "add", "README.md")
    git(root, "commit", "-q", "-m", "initial")
    return root


def server_env(
    tmp_path: Path, model: FakeModelServer, extra: Mapping[str, str] | None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(GIT_ENV)
    env.update(
        HOME=str(tmp_path),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        OPENAI_BASE_URL=model.openai_base_url,
        OPENAI_API_KEY="sk-test-not-a-real-key",
    )
    env.update(extra or {})
    return env


Starter = Callable[..., Awaitable[Keel]]


@pytest_asyncio.fixture
async def start_keel(preset: str, workspace: Path, tmp_path: Path) -> AsyncIterator[Starter]:
    """``await start_keel(entries, latency_s=0, options=None, env=None, model=None,
    command=KEEL_SERVE, hold_configuration=None)``: while ``hold_configuration`` is not set,
    the editor does not answer ``workspace/configuration``."""
    started: list[Keel] = []

    async def start(
        entries: Iterable[Mapping[str, Any]] = (),
        *,
        latency_s: float = 0.0,
        options: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        model: FakeModelServer | None = None,
        command: list[str] | None = None,
        hold_configuration: asyncio.Event | None = None,
    ) -> Keel:
        fake = model or FakeModelServer(entries, latency_s=latency_s).start()
        config = ClientServerConfig(
            server_command=command or KEEL_SERVE,
            server_env=server_env(tmp_path, fake, env),
            client_factory=make_client,
        )
        client = await config.start()
        assert isinstance(client, KeelTestClient)
        keel = Keel(client, workspace, fake, preset)
        keel.hold_configuration = hold_configuration
        install_handlers(keel)
        await client.initialize_session(
            T.InitializeParams(
                capabilities=client_capabilities(preset),
                root_uri=workspace.as_uri(),
                workspace_folders=[T.WorkspaceFolder(uri=workspace.as_uri(), name="ws")],
                initialization_options=dict(options or OPTIONS),
            )
        )
        started.append(keel)
        return keel

    yield start
    models = {id(keel.model): keel.model for keel in started}
    for keel in started:
        process = keel.client._server
        if process is not None and process.returncode is None:
            await asyncio.wait_for(keel.client.shutdown_session(), 30)
        await keel.client.stop()
    for model in models.values():
        model.close()
    for keel in started:
        assert not keel.client.seen_errors, keel.client.seen_errors


async def disconnect(keel: Keel) -> int:
    """The editor goes away: the server's stdin closes; returns the server's exit status."""
    process = keel.client._server
    assert process is not None and process.stdin is not None
    process.stdin.close()
    return await asyncio.wait_for(process.wait(), 60)
