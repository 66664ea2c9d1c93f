"""Settings from ``initializationOptions`` and ``workspace/configuration``: invalid values are
reported with ``window/showMessage`` and the defaults kept. And ``keel serve --tcp``.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from lsprotocol import types as T
from pygls.lsp.client import LanguageClient
from pytest_lsp import client_capabilities

from tests.e2e.conftest import Starter, server_env
from tests.e2e.editor import KEEL_SERVE, Keel
from tests.e2e.test_review_flow import keel_commits
from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import bundle, node, plan


async def test_invalid_settings_are_reported_and_defaults_kept(
    start_keel: Starter, workspace: Path
) -> None:
    options = {
        "models": {"default": "openai:gpt-4.1"},
        "engine": {"mode": "reckless", "speculate": False, "energy_weights": [1, -2, 1]},
        "trace": {"server": "verbose"},  # the extension's own setting: ignored, not reported
    }
    entries = [
        plan(node("node-1", ["calc.py"], title="Calculator module")),
        bundle("node-1", writes={"calc.py": "def add(a: int, b: int) -> int:\n    return a + b\n"}),
    ]
    keel: Keel = await start_keel(entries, options=options)
    keel.configuration = {"budget": {"max_steps": 0}}  # what a pull of the keel section returns
    started = await keel.command("keel.server.startSession", {"task": "Add a Python module"})
    await keel.changes.wait_for(
        lambda items: any(c["outcome"] for c in items if c["sessionId"] == started["sessionId"]),
        "the session to finish",
    )
    messages = [m.message for m in keel.client.messages]
    assert any("engine.mode = 'reckless' ignored" in m for m in messages), messages
    assert any("engine.energy_weights" in m for m in messages), messages
    assert not any("trace" in m for m in messages), messages
    if keel.preset != "neovim@v0.7":  # it has no workspace/configuration
        assert any("budget.max_steps = 0 ignored" in m for m in messages), messages
    status = await keel.command("keel.server.status")
    assert status["mode"] == "balanced" and status["outcome"] == "success"  # defaults kept
    assert len(keel_commits(workspace)) == 1  # balanced mode: a small bundle needs no approval

    # Each problem is reported once, not again with every session...
    def reckless() -> int:
        return sum("engine.mode = 'reckless' ignored" in m.message for m in keel.client.messages)

    assert reckless() == 1
    again = await keel.command("keel.server.startSession", {"task": "Add another module"})
    assert again["sessionId"] != started["sessionId"]
    await keel.command("keel.server.abort", {"sessionId": again["sessionId"]})
    await keel.command("keel.server.status")  # every message sent before it has arrived
    assert reckless() == 1
    # ...but once more after each change of the settings.
    keel.configuration = {"budget": {"max_steps": 0}, "engine": {"complexity_k": 4}}
    changed = T.DidChangeConfigurationParams(settings={"keel": keel.configuration})
    keel.client.workspace_did_change_configuration(changed)
    await keel.shown.wait_for(lambda _: reckless() == 2, "the problem reported again")
    await keel.command("keel.server.status")
    assert reckless() == 2


async def test_a_late_first_configuration_says_no_problem_twice(
    start_keel: Starter, workspace: Path
) -> None:
    """The editor answers the server's first ``workspace/configuration`` only after a session
    has started and reported the initialization options' problem: that answer is the first
    load of the settings, not a change, and the problem is not said again (it was, and CI
    caught it once in a run of the test above)."""
    hold = asyncio.Event()
    options = {"models": {"default": "openai:gpt-4.1"}, "engine": {"mode": "reckless"}}
    entries = [
        plan(node("node-1", ["calc.py"], title="Calculator module")),
        bundle("node-1", writes={"calc.py": "def add(a: int, b: int) -> int:\n    return a + b\n"}),
    ]
    keel: Keel = await start_keel(entries, options=options, hold_configuration=hold)
    keel.configuration = {"budget": {"max_steps": 0}}
    started = await keel.command("keel.server.startSession", {"task": "Add a Python module"})
    await keel.changes.wait_for(
        lambda items: any(c["outcome"] for c in items if c["sessionId"] == started["sessionId"]),
        "the session to finish",
    )

    def said(text: str) -> int:
        return sum(text in m.message for m in keel.client.messages)

    assert said("engine.mode = 'reckless' ignored") == 1
    hold.set()
    if keel.preset != "neovim@v0.7":  # it has no workspace/configuration
        await keel.shown.wait_for(lambda _: said("budget.max_steps = 0 ignored") == 1, "max_steps")
    await keel.command("keel.server.status")  # every message sent before it has arrived
    assert said("engine.mode = 'reckless' ignored") == 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_serve_over_tcp(preset: str, workspace: Path, tmp_path: Path) -> None:
    port = _free_port()
    with FakeModelServer() as model:
        env = server_env(tmp_path, model, None)
        process = await asyncio.create_subprocess_exec(
            *KEEL_SERVE, "--tcp", f"127.0.0.1:{port}", env=env, stderr=asyncio.subprocess.PIPE
        )
        assert process.stderr is not None
        await asyncio.wait_for(process.stderr.readline(), 60)  # "Keel listening on ..."
        client = LanguageClient("tcp-test", "1")
        await client.start_tcp("127.0.0.1", port)
        result = await client.initialize_async(
            T.InitializeParams(
                capabilities=client_capabilities(preset), root_uri=workspace.as_uri()
            )
        )
        assert result.server_info is not None and result.server_info.name == "keel"
        assert "keel.server.approve" in (
            result.capabilities.execute_command_provider.commands or []
        )
        client.initialized(T.InitializedParams())
        status = await client.workspace_execute_command_async(
            T.ExecuteCommandParams("keel.server.status", [{}])
        )
        assert status["pendingBundles"] == []
        await client.shutdown_async(None)
        client.exit(None)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        await client.stop()
