"""The workspace registry: every folder Keel ran a session in on this machine.

A small JSON file in the user's state directory (``$XDG_STATE_HOME/keel/workspaces.json``,
default ``~/.local/state``). Why a file of its own and not a scan: the dashboard and
``keel sessions`` must find last week's sessions without being told where they ran, and a
scan of the home directory would be slow and would read folders the user never meant to show.

Written atomically (a temporary file renamed over the old one) under an advisory lock, so
two sessions starting at once in two workspaces both end up listed. Read leniently: a folder
that is gone is pruned, and an unreadable file is set aside (never silently overwritten) and
the registry starts again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keel.bundles.atomic import write_atomically

log = logging.getLogger(__name__)

REGISTRY_FILE = "workspaces.json"
#: At most this many workspaces are kept (the least recently used are dropped).
MAX_WORKSPACES = 500


def registry_path(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/keel/workspaces.json`` (default ``~/.local/state/keel/...``)."""
    env = os.environ if env is None else env
    state = env.get("XDG_STATE_HOME") or ""
    if not state or not Path(state).is_absolute():  # the XDG spec ignores relative values
        state = str(Path(env.get("HOME") or str(Path.home())) / ".local" / "state")
    return Path(state) / "keel" / REGISTRY_FILE


def remember(workspace: Path, env: Mapping[str, str] | None = None) -> None:
    """Add (or refresh) ``workspace``; called when a session starts there.

    Never raises for a state directory Keel cannot write: the session matters more than
    the dashboard's list, so the problem is logged and the session goes on.
    """
    path = registry_path(env)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path):
            entries = _read(path, set_aside=True)
            key = str(Path(workspace).resolve())
            entries = [e for e in entries if e["path"] != key]
            entries.insert(0, {"path": key, "last_session_at": _now()})
            _write(path, entries[:MAX_WORKSPACES])
    except OSError as err:
        log.warning("cannot record %s in the workspace registry %s: %s", workspace, path, err)


def known_workspaces(env: Mapping[str, str] | None = None) -> list[Path]:
    """The registered workspaces, most recently used first, without folders that are gone
    (which are pruned from the file too)."""
    path = registry_path(env)
    if not path.is_file():
        return []
    try:
        with _locked(path):
            entries = _read(path, set_aside=False)
            present = [e for e in entries if Path(e["path"]).is_dir()]
            if len(present) != len(entries):
                _write(path, present)
    except OSError as err:
        log.warning("cannot read the workspace registry %s: %s", path, err)
        return []
    return [Path(e["path"]) for e in present]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path.with_name(path.name + ".lock"), "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read(path: Path, *, set_aside: bool) -> list[dict[str, Any]]:
    """The entries; a file that is not a registry is renamed ``*.bad`` when about to be
    rewritten (so its bytes are kept) and reads as empty."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    try:
        data = json.loads(raw)
        entries = data["workspaces"]
        if not isinstance(entries, list):
            raise TypeError("workspaces is not a list")
        return [
            {"path": str(e["path"]), "last_session_at": str(e.get("last_session_at", ""))}
            for e in entries
            if isinstance(e, dict)
            and isinstance(e.get("path"), str)
            and Path(e["path"]).is_absolute()
        ]
    except (ValueError, TypeError, KeyError) as err:
        log.warning("the workspace registry %s is unreadable (%s); starting a new one", path, err)
        if set_aside:
            os.replace(path, path.with_name(path.name + ".bad"))
        return []


def _write(path: Path, entries: list[dict[str, Any]]) -> None:
    data = json.dumps({"version": 1, "workspaces": entries}, indent=1).encode()
    write_atomically(path, data, new_mode=0o600)  # it lists the user's folders: theirs alone


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
