"""The sandbox from the editor: a session that cannot be sandboxed is refused with the fix,
and one run with ``[sandbox] mode = "off"`` says so in the language server's log."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from lsprotocol import types as T
from pygls.exceptions import JsonRpcException

from tests.e2e.conftest import Starter
from tests.e2e.editor import Keel
from tests.e2e.test_sessions import entries


async def test_a_session_without_bubblewrap_is_refused_naming_the_fix(
    start_keel: Starter, workspace: Path, tmp_path: Path
) -> None:
    tools = tmp_path / "bin"  # git, but no bwrap
    tools.mkdir()
    git = shutil.which("git")
    assert git is not None
    (tools / "git").symlink_to(git)
    keel: Keel = await start_keel(entries(), env={"PATH": str(tools)})
    with pytest.raises(JsonRpcException) as refused:
        await keel.command("keel.server.startSession", {"task": "Fix calc.py"})
    message = str(refused.value)
    assert "bwrap not found" in message and "apt-get install bubblewrap" in message
    assert '[sandbox] mode = "off"' in message
    assert keel.model.requests == []  # refused before the first model call


async def test_a_session_with_the_sandbox_off_says_so_in_the_log(
    start_keel: Starter, workspace: Path
) -> None:
    keel: Keel = await start_keel(entries(), env={"KEEL_SANDBOX": "off"})
    await keel.command("keel.server.startSession", {"task": "Fix calc.py"})
    await keel.proposal("node-1")
    warnings = [m.message for m in keel.client.log_messages if m.type == T.MessageType.Warning]
    assert any("sandbox off" in m and "full access" in m for m in warnings), warnings
