"""The session's model clients are built in a thread while the sandbox and environment probes
run (issue 16); a failed set-up still closes them and reports its own error."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from keel import app
from keel.app import building_clients, discard_clients, open_engine
from keel.config import load_config
from keel.engine.models import Tier
from keel.engine.ports import ConfigError
from keel.sandbox import SandboxUnavailable


class Closing:
    def __init__(self) -> None:
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


async def test_discard_closes_each_client_once() -> None:
    shared, other = Closing(), Closing()

    async def built() -> dict[Tier, Any]:
        return {Tier.ARCHITECT: shared, Tier.ACTUATOR: shared, Tier.VERIFIER: other}

    await discard_clients(asyncio.create_task(built()))
    assert (shared.closed, other.closed) == (1, 1)


async def test_discard_drops_the_clients_own_error() -> None:
    async def failing() -> dict[Tier, Any]:
        raise ConfigError("OPENAI_API_KEY is not set")

    await discard_clients(asyncio.create_task(failing()))  # no exception


async def test_clients_are_built_off_the_event_loop(tmp_path: Path) -> None:
    transcript = tmp_path / "t.jsonl"
    transcript.write_text("")
    config = load_config(tmp_path, env={}, flags={"model": f"replay:{transcript}"})
    seen: list[threading.Thread] = []
    real = app.model_clients

    def noting(*args: Any) -> Any:
        seen.append(threading.current_thread())
        return real(*args)

    app.model_clients = noting  # type: ignore[assignment]
    try:
        clients = await building_clients(config, {})
    finally:
        app.model_clients = real  # type: ignore[assignment]
    assert seen and seen[0] is not threading.main_thread()
    assert set(clients) == set(Tier)


async def test_a_failed_sandbox_is_reported_not_the_missing_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both are wrong: the sandbox probe fails first, as before the clients moved to a thread."""

    async def no_sandbox(*args: object) -> None:
        raise SandboxUnavailable("cannot sandbox verification: bwrap not found")

    monkeypatch.setattr(app, "session_sandbox", no_sandbox)
    config = load_config(tmp_path, env={}, flags={"model": "openai:gpt-4.1"})
    with pytest.raises(SandboxUnavailable, match="bwrap not found"):
        async with open_engine(
            tmp_path,
            "task",
            config,
            sink=None,
            approver=None,
            auto_approve=True,
            env={},  # type: ignore[arg-type]
        ):
            pytest.fail("no engine without a sandbox")
