"""Where ``keel dashboard``'s execution API may run sessions: the ``-w`` folders, else every
registered workspace and the current folder; and no API at all without its token."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from keel.cli import api_roots, dashboard_api
from keel.dashboard.registry import remember
from keel.engine.ports import ConfigError


def args(*workspaces: Path) -> argparse.Namespace:
    return argparse.Namespace(workspaces=[str(w) for w in workspaces])


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [n for n in os.environ if n.startswith("KEEL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ".config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path


def test_the_w_folders_are_the_only_roots(home: Path) -> None:
    one, two = home / "one", home / "two"
    one.mkdir()
    two.mkdir()
    remember(home / "registered")
    assert api_roots(args(one, two, one)) == [one.resolve(), two.resolve()]
    with pytest.raises(ConfigError, match="no such directory"):
        api_roots(args(home / "missing"))


def test_without_w_the_registered_workspaces_and_the_current_folder(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registered, here = home / "registered", home / "here"
    registered.mkdir()
    here.mkdir()
    remember(registered)
    monkeypatch.chdir(here)
    assert api_roots(args()) == [registered.resolve(), here.resolve()]
    monkeypatch.chdir(registered)  # the current folder is not listed twice
    assert api_roots(args()) == [registered.resolve()]


def test_no_token_no_api_and_a_short_token_is_refused(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert dashboard_api(args(home)) is None
    monkeypatch.setenv("KEEL_API_TOKEN", "")
    assert dashboard_api(args(home)) is None
    monkeypatch.setenv("KEEL_API_TOKEN", "too-short")
    with pytest.raises(ConfigError, match="KEEL_API_TOKEN must be at least 16 characters"):
        dashboard_api(args(home))
    monkeypatch.setenv("KEEL_API_TOKEN", "a-token-long-enough-0123")
    assert dashboard_api(args(home)) is not None
