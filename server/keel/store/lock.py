"""One writer per workspace: a session holds ``.keel/session.lock`` while it runs.

``flock`` locks vanish with their process, so a ``kill -9`` never leaves a stale lock behind;
the file's content (the holder's pid) only makes the refusal message useful.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from keel.engine.ports import KeelError


class WorkspaceLock:
    """An exclusive, non-blocking lock on a workspace's store."""

    def __init__(self, keel_dir: Path) -> None:
        self._path = keel_dir / "session.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise KeelError(
                f"cannot lock the workspace: {self._path}: {err.strerror or err}; Keel needs "
                f"to write to {self._path.parent}"
            ) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise KeelError(
                f"another Keel session is running in this workspace (pid {holder}); "
                "wait for it, or stop it with `keel abort`"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WorkspaceLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
