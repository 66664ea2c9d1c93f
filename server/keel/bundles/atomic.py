"""One way to replace a file so that it is never seen half written.

Both writers of files use it: :mod:`keel.bundles.apply` (a bundle written into a sandbox) and
the ledger (approved bytes written into the workspace before the commit). The steps: write a
temporary sibling, fsync it, give it the mode the file should have, rename it over the
target, fsync the directory so the rename itself survives a crash. A file whose loss in a
crash does not matter (a sandbox, rebuilt by a resumed session) may skip both syncs
(``durable=False``): it is still never seen half written.

Why the temporary file is a sibling named ``.<name>.keel-<hex>.tmp``: ``rename`` is atomic
only within one file system, and a fixed pattern lets a later run find and remove what a
killed one left (:func:`stale_temporaries`). A name near NAME_MAX (255 bytes) is replaced by
a digest in the temporary's name, so every valid name has a valid temporary file.

Modes: an existing file keeps its mode (a script stays executable); a new file gets
``new_mode``, or, when that is ``None``, what the umask gives (as git would create it).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

#: The longest name kept whole in a temporary file's name (255 bytes minus the decoration).
_STEM_MAX = 255 - 24


def write_atomically(
    target: Path,
    data: bytes,
    *,
    new_mode: int | None = None,
    executable: bool | None = None,
    midway: Callable[[], None] | None = None,
    before_replace: Callable[[], None] | None = None,
    durable: bool = True,
) -> None:
    """Replace ``target`` with ``data``; on any error the old file (or its absence) stays.

    ``executable`` sets (True) or clears (False) the execute bits wherever the file is
    readable; None leaves the mode as above. ``midway`` runs with half the data written and
    flushed (a crash point for tests); ``before_replace`` runs right before the rename and
    may raise to cancel it (the file changed since it was checked). The temporary file is
    removed whatever happens. ``durable=False`` skips the file's and the directory's fsync.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        old_mode: int | None = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        old_mode = None
    temporary = target.with_name(f".{_stem(target.name)}.keel-{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            half = len(data) // 2
            handle.write(data[:half])
            if midway is not None:
                handle.flush()
                midway()
            handle.write(data[half:])
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        _set_mode(temporary, new_mode if old_mode is None else old_mode, executable)
        if before_replace is not None:
            before_replace()
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        fsync_directory(target.parent)


def fsync_directory(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable (best effort: some file systems
    cannot fsync a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def stale_temporaries(target: Path) -> list[Path]:
    """Temporary files a killed writer left beside ``target`` (its write never happened)."""
    pattern = f".{glob.escape(_stem(target.name))}.keel-*.tmp"
    with contextlib.suppress(FileNotFoundError):
        return list(target.parent.glob(pattern))
    return []


def _stem(name: str) -> str:
    if len(os.fsencode(name)) <= _STEM_MAX:
        return name
    return hashlib.sha256(os.fsencode(name)).hexdigest()[:32]


def _set_mode(path: Path, mode: int | None, executable: bool | None) -> None:
    """``mode`` (None: what the umask gave the new file), then the execute bits."""
    chosen = stat.S_IMODE(path.stat().st_mode) if mode is None else mode
    if executable is True:
        chosen |= (chosen & 0o444) >> 2  # x wherever r
    elif executable is False:
        chosen &= ~0o111
    os.chmod(path, chosen)


__all__ = ["fsync_directory", "stale_temporaries", "write_atomically"]
