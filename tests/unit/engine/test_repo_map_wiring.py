"""The architect gets the repository map: the prompt carries it in place of the listing, the
session asks for it with the configured budget and the scope's files as focus, and a map that
cannot be built falls back to the listing with a warning instead of failing the session."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from keel.engine import prompts
from keel.engine.planner import PlanScope
from keel.engine.ports import RepoMap
from keel.engine.session import Engine
from keel.engine.settings import EngineSettings


class FakeContext:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple[str, tuple[str, ...], int]] = []

    async def render_map(
        self, task: str, *, focus: Sequence[str] = (), budget_tokens: int
    ) -> RepoMap:
        self.calls.append((task, tuple(focus), budget_tokens))
        if self.fail:
            raise RuntimeError("parser exploded")
        return RepoMap(text="Repository map (...):\nsrc/a.py:\n    1│def a():", tokens=10)

    async def related_definitions(self, paths: Sequence[str], *, budget_tokens: int) -> str:
        return ""


def engine(context: FakeContext | None, scope: PlanScope | None = None) -> Engine:
    unused: Any = None
    return Engine(
        workspace=Path("."),
        clients={},
        plugins=[],
        ledger=unused,
        store=unused,
        runner=unused,
        sink=unused,
        approver=unused,
        settings=EngineSettings(map_tokens=1234),
        plan_scope=scope,
        context=context,
    )


def test_architect_prompt_carries_the_map_instead_of_the_listing() -> None:
    with_map = prompts.architect_prompt(
        "Fix a", ["src/a.py"], {}, ["python"], [], repo_map="Repository map (x):\nsrc/a.py:"
    )
    assert "Repository map (x):\nsrc/a.py:" in with_map and "Workspace files:" not in with_map
    listing = prompts.architect_prompt("Fix a", ["src/a.py"], {}, ["python"], [])
    assert "Workspace files:\n  src/a.py" in listing


async def test_session_asks_for_the_map_with_budget_and_focus() -> None:
    context = FakeContext()
    scope = PlanScope(max_nodes=1, must_own=("src/a.py",))
    text = await engine(context, scope)._repo_map("Fix a")
    assert text is not None and text.startswith("Repository map")
    assert context.calls == [("Fix a", ("src/a.py",), 1234)]


async def test_a_failing_map_falls_back_to_the_listing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert await engine(FakeContext(fail=True))._repo_map("Fix a") is None
    assert "repository map unavailable" in caplog.text and "parser exploded" in caplog.text
    assert await engine(None)._repo_map("Fix a") is None
