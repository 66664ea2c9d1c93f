"""Faults of the workspace itself: a corrupt store, a read-only ``.keel/``, a full disk, git's
``index.lock``. Each gets one clear line on stderr (never a traceback) and loses nothing; where
the fault goes away, ``keel resume`` finishes the session. (A second writer is covered with
``keel abort`` in test_session_reports.py.)"""

from __future__ import annotations

import os
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import KEEL, bundle, git, json_events
from tests.integration.small_session import (
    SmallRun,
    agent_command,
    copy_workspace,
    init_workspace,
    keel_env,
    request_counts,
    resume_command,
    run,
    small_entries,
    subjects,
    tree,
)


def _clear_failure(proc_stderr: str, *needles: str) -> None:
    assert "Traceback" not in proc_stderr, proc_stderr
    lines = proc_stderr.strip().splitlines()
    assert lines and lines[-1].startswith("keel: "), proc_stderr
    for needle in needles:
        assert needle in lines[-1], proc_stderr


# ----------------------------------------------------------------------------- corrupt store


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_store_is_a_clear_error_and_is_kept(
    damage: str, small_run: SmallRun, tmp_path: Path
) -> None:
    workspace = copy_workspace(small_run.workspace, tmp_path / "ws")
    db = workspace / ".keel" / "keel.db"
    original = db.read_bytes()
    damaged = b"this is not a database\n" * 200 if damage == "garbage" else original[:8192]
    db.write_bytes(damaged)
    for sidecar in db.parent.glob("keel.db-*"):
        sidecar.unlink()
    with FakeModelServer(small_entries()) as server:
        env = keel_env(server, tmp_path)
        for command in (
            agent_command(workspace),
            resume_command(workspace),
            [*KEEL, "status", "-w", str(workspace)],
        ):
            proc = run(command, env)
            assert proc.returncode == 1, proc.stderr
            _clear_failure(proc.stderr, str(db), "not a valid Keel store", "left untouched")
            assert db.read_bytes() == damaged
        assert server.requests == []
    assert subjects(workspace) == small_run.subjects  # the ledger is untouched too


# ----------------------------------------------------------------------------- read-only


def _unprivileged() -> list[str]:
    """A command prefix under which file permissions apply (root normally bypasses them)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    caps = "-dac_override,-dac_read_search,-fowner"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}"]


@pytest.fixture
def read_only_keel(small_run: SmallRun, tmp_path: Path) -> Iterator[Path]:
    workspace = copy_workspace(small_run.workspace, tmp_path / "ws")
    keel = workspace / ".keel"
    for path in keel.iterdir():
        if path.is_file():
            path.chmod(0o444)
    keel.chmod(0o555)
    try:
        yield workspace
    finally:
        keel.chmod(0o755)


def test_a_read_only_keel_dir_is_a_clear_error(read_only_keel: Path, tmp_path: Path) -> None:
    keel = read_only_keel / ".keel"
    before = {p.name: p.read_bytes() for p in keel.iterdir() if p.is_file()}
    with FakeModelServer(small_entries()) as server:
        env = keel_env(server, tmp_path)
        agent = run([*_unprivileged(), *agent_command(read_only_keel)], env)
        status = run([*_unprivileged(), *KEEL, "status", "-w", str(read_only_keel)], env)
        assert server.requests == []
    assert agent.returncode == 1
    _clear_failure(agent.stderr, str(keel), "Permission denied")
    assert status.returncode == 1
    _clear_failure(status.stderr, "read", str(keel))
    assert {p.name: p.read_bytes() for p in keel.iterdir() if p.is_file()} == before
    assert stat.S_IMODE(keel.stat().st_mode) == 0o555


# ----------------------------------------------------------------------------- disk full


def test_a_full_disk_stops_the_session_and_resume_finishes(
    small_run: SmallRun, tmp_path: Path
) -> None:
    """Simulated with a file size limit (``prlimit --fsize``): node-3's reply (1.5 MB) cannot
    be stored. Once the limit is gone, ``keel resume`` asks for that reply again and ends
    with node-3's big file committed; everything before it is kept."""
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is not installed")
    entries = small_entries()
    big = "delta " * 250_000
    entries[-1] = {**bundle("node-3", writes={"d.txt": big}), "usage": entries[-1]["usage"]}
    workspace = init_workspace(tmp_path / "ws")
    with FakeModelServer(entries) as server:
        env = keel_env(server, tmp_path)
        full = run(["prlimit", "--fsize=1000000", *agent_command(workspace)], env)
        committed_before = subjects(workspace)
        resumed = run(resume_command(workspace), env)
        counts = request_counts(server.requests)
    assert full.returncode == 1
    _clear_failure(full.stderr, "cannot write to the session store", "disk")
    assert committed_before == ["keel: Node node-2", "keel: Two notes", "initial commit"]
    assert resumed.returncode == 0, resumed.stderr
    assert json_events(resumed.stdout)[-1]["outcome"] == "success"
    assert subjects(workspace) == small_run.subjects
    assert (workspace / "d.txt").read_text() == big
    assert git(workspace, "status", "--porcelain", "--ignored") == "!! .keel/\n"
    # only the reply that could not be stored is asked again
    assert {k: n for k, n in counts.items() if n > 1} == {("actuator", "node-3", 1): 2}


# ----------------------------------------------------------------------------- index.lock


def _lock(workspace: Path, age_s: float) -> Path:
    lock = workspace / ".git" / "index.lock"
    lock.write_bytes(b"")
    then = time.time() - age_s
    os.utime(lock, (then, then))
    return lock


def test_a_stale_index_lock_is_removed_with_a_warning(small_run: SmallRun, tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path / "ws")
    lock = _lock(workspace, age_s=3600)
    with FakeModelServer(small_entries()) as server:
        proc = run(agent_command(workspace), keel_env(server, tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "stale git lock" in proc.stderr and str(lock) in proc.stderr
    assert not lock.exists()
    assert tree(workspace) == small_run.tree


def test_a_fresh_index_lock_is_a_clear_error_and_resume_finishes_once_it_is_gone(
    small_run: SmallRun, tmp_path: Path
) -> None:
    workspace = init_workspace(tmp_path / "ws")
    lock = _lock(workspace, age_s=0)
    with FakeModelServer(small_entries()) as server:
        env = keel_env(server, tmp_path)
        refused = run(agent_command(workspace), env)
        assert lock.exists()  # someone else's lock is never removed
        lock.unlink()
        resumed = run(resume_command(workspace), env)
        counts = request_counts(server.requests)
    assert refused.returncode == 1
    _clear_failure(refused.stderr, str(lock), "another git command is running")
    assert resumed.returncode == 0, resumed.stderr
    assert tree(workspace) == small_run.tree and subjects(workspace) == small_run.subjects
    assert set(counts.values()) == {1}  # the resumed session replays what was answered
