"""The execution API's development server (``python -m keel.api``) as a real process.

Tests drive it through real HTTP with :class:`keel.client.KeelClient`, the model behind it is
the fake model server, and it can be killed with SIGKILL like a power cut.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from keel.client import KeelClient
from tests.integration.conftest import KEEL

TOKEN = "test-token-0123456789abcdef"


class ApiServer:
    """``python -m keel.api -w ROOT`` on a free loopback port; a context manager."""

    def __init__(self, roots: list[Path], env: Mapping[str, str], token: str = TOKEN) -> None:
        self._roots = roots
        self._env = {**env, "KEEL_API_TOKEN": token}
        self.token = token
        self.url = ""
        self.log: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        #: After :meth:`stop`: whether SIGTERM stopped the server (exit status 0).
        self.stopped_cleanly = False

    def start(self) -> ApiServer:
        roots = [arg for root in self._roots for arg in ("-w", str(root))]
        python = KEEL[0]
        self._proc = subprocess.Popen(
            [python, "-m", "keel.api", "--host", "127.0.0.1", "--port", "0", *roots],
            env=self._env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert self._proc.stderr is not None
        for raw in self._proc.stderr:  # blocks until the server says where it listens
            line = raw.decode(errors="replace").rstrip()
            self.log.append(line)
            if "listening on " in line:
                self.url = line.split("listening on ", 1)[1].strip()
                break
        if not self.url:
            self._proc.wait(timeout=30)
            raise AssertionError("the API server did not start:\n" + "\n".join(self.log))
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        return self

    def _drain(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for raw in self._proc.stderr:
            self.log.append(raw.decode(errors="replace").rstrip())

    def client(self, token: str | None = None) -> KeelClient:
        return KeelClient(self.url, self.token if token is None else token, timeout=60)

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def wait(self, timeout: float = 60) -> int:
        assert self._proc is not None
        return self._proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: no cleanup, like a power cut."""
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=30)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self.stopped_cleanly = self._proc.wait(timeout=30) == 0
            except subprocess.TimeoutExpired:
                self.kill()
        if self._reader is not None:
            self._reader.join(timeout=5)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
