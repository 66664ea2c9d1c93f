"""The one atomic file writer (``keel.bundles.atomic``), used by bundles and the ledger: a
file is replaced whole or not at all, keeps its mode, and the file and its directory are
synced; nothing is left behind on failure."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from keel.bundles.atomic import fsync_directory, stale_temporaries, write_atomically


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_gets_the_given_mode_or_the_umasks(tmp_path: Path) -> None:
    write_atomically(tmp_path / "a" / "fixed.txt", b"x", new_mode=0o600)
    assert _mode(tmp_path / "a" / "fixed.txt") == 0o600
    umask = os.umask(0o027)
    try:
        write_atomically(tmp_path / "umask.txt", b"y")
    finally:
        os.umask(umask)
    assert _mode(tmp_path / "umask.txt") == 0o640
    assert (tmp_path / "umask.txt").read_bytes() == b"y"


def test_an_existing_file_keeps_its_mode_unless_told(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("old")
    script.chmod(0o750)
    write_atomically(script, b"new", new_mode=0o644)  # new_mode is for new files only
    assert (_mode(script), script.read_bytes()) == (0o750, b"new")
    write_atomically(script, b"newer", executable=False)
    assert _mode(script) == 0o640
    write_atomically(script, b"newest", executable=True)
    assert _mode(script) == 0o750


def test_the_file_and_its_directory_are_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[bool] = []  # True: a directory
    real = os.fsync

    def recording(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    write_atomically(tmp_path / "f.txt", b"data")
    assert synced == [False, True]


def test_a_cancelled_replace_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "keep.txt"
    target.write_bytes(b"old")

    def moved() -> None:
        raise RuntimeError("changed since it was checked")

    with pytest.raises(RuntimeError, match="changed"):
        write_atomically(target, b"new", before_replace=moved)
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["keep.txt"]


def test_midway_the_target_is_untouched_and_the_temporary_is_findable(
    tmp_path: Path,
) -> None:
    target = tmp_path / "half.txt"
    target.write_bytes(b"before")
    seen: list[bytes] = []

    def crash() -> None:
        seen.append(target.read_bytes())
        [temporary] = stale_temporaries(target)
        seen.append(temporary.read_bytes())
        raise KeyboardInterrupt  # a BaseException, like a kill at this point

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, b"0123456789", midway=crash)
    assert seen == [b"before", b"01234"]
    assert target.read_bytes() == b"before" and stale_temporaries(target) == []


def test_a_name_at_the_limit_still_gets_a_valid_temporary(tmp_path: Path) -> None:
    target = tmp_path / ("n" * 255)
    write_atomically(target, b"long")
    assert target.read_bytes() == b"long"
    assert sorted(os.listdir(tmp_path)) == ["n" * 255]


def test_stale_temporaries_are_only_the_targets(tmp_path: Path) -> None:
    target = tmp_path / "a.py"
    mine = tmp_path / ".a.py.keel-0123abcd.tmp"
    other = tmp_path / ".b.py.keel-0123abcd.tmp"
    mine.write_bytes(b"")
    other.write_bytes(b"")
    assert stale_temporaries(target) == [mine]
    assert stale_temporaries(tmp_path / "missing" / "x") == []
    fsync_directory(tmp_path / "missing")  # best effort: no error


def test_a_file_that_need_not_survive_a_crash_is_not_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    target = tmp_path / "sandbox" / "f.txt"
    write_atomically(target, b"data", durable=False)
    assert target.read_bytes() == b"data"
    assert synced == []
    assert os.listdir(target.parent) == ["f.txt"]  # still replaced whole, no temporary left
