"""The workspace registry: atomic, pruned of folders that are gone, lenient with a bad file."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from keel.dashboard.registry import known_workspaces, registry_path, remember


def _env(tmp_path: Path) -> dict[str, str]:
    return {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path / "home")}


def test_the_registry_lives_in_the_xdg_state_directory_or_under_home(tmp_path: Path) -> None:
    assert registry_path(_env(tmp_path)) == tmp_path / "state" / "keel" / "workspaces.json"
    home_only = {"HOME": str(tmp_path / "home")}
    expected = tmp_path / "home" / ".local" / "state" / "keel" / "workspaces.json"
    assert registry_path(home_only) == expected
    # a relative XDG_STATE_HOME is ignored, as the XDG spec says
    assert registry_path({**home_only, "XDG_STATE_HOME": "rel"}) == expected


def test_remember_adds_each_workspace_once_most_recent_first(tmp_path: Path) -> None:
    env = _env(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    remember(a, env)
    remember(b, env)
    remember(a, env)
    assert known_workspaces(env) == [a.resolve(), b.resolve()]
    data = json.loads(registry_path(env).read_text())
    assert [e["path"] for e in data["workspaces"]] == [str(a.resolve()), str(b.resolve())]


def test_folders_that_are_gone_are_pruned_on_read(tmp_path: Path) -> None:
    env = _env(tmp_path)
    kept, gone = tmp_path / "kept", tmp_path / "gone"
    kept.mkdir()
    gone.mkdir()
    remember(kept, env)
    remember(gone, env)
    gone.rmdir()
    assert known_workspaces(env) == [kept.resolve()]
    assert str(gone) not in registry_path(env).read_text()


def test_an_unreadable_registry_is_set_aside_not_lost(tmp_path: Path) -> None:
    env = _env(tmp_path)
    path = registry_path(env)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert known_workspaces(env) == []
    assert path.read_text() == "{not json"  # reading never rewrites what it cannot parse
    ws = tmp_path / "ws"
    ws.mkdir()
    remember(ws, env)
    assert known_workspaces(env) == [ws.resolve()]
    assert path.with_name("workspaces.json.bad").read_text() == "{not json"


def test_entries_that_are_not_absolute_folders_are_ignored(tmp_path: Path) -> None:
    env = _env(tmp_path)
    path = registry_path(env)
    path.parent.mkdir(parents=True)
    ws = tmp_path / "ws"
    ws.mkdir()
    entries = [{"path": "relative"}, {"path": 7}, "text", {"path": str(ws)}]
    path.write_text(json.dumps({"version": 1, "workspaces": entries}))
    assert known_workspaces(env) == [ws]


def test_an_unwritable_state_directory_does_not_stop_a_session(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    remember(tmp_path, {"XDG_STATE_HOME": str(blocker)})  # logs, does not raise
    assert blocker.read_text().startswith("a file")


def test_sessions_starting_at_once_in_many_workspaces_are_all_recorded(tmp_path: Path) -> None:
    env = _env(tmp_path)
    folders = [tmp_path / f"ws{i}" for i in range(12)]
    for f in folders:
        f.mkdir()
    threads = [threading.Thread(target=remember, args=(f, env)) for f in folders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(known_workspaces(env)) == sorted(f.resolve() for f in folders)
