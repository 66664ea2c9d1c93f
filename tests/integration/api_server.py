"""The execution API as a real process: ``keel dashboard -w ROOT``, which mounts it at
``/api/v1`` when the API token is set, or the development server ``python -m keel.api``.

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
from typing import IO

from keel.client import KeelClient
from tests.integration.conftest import KEEL

TOKEN = "test-token-0123456789abcdef"


class ApiServer:
    """``keel dashboard -w ROOT`` (or, with ``dev``, ``python -m keel.api -w ROOT``) on a free
    loopback port; a context manager. ``url`` is the API's base (``.../api/v1``)."""

    def __init__(
        self,
        roots: list[Path],
        env: Mapping[str, str],
        token: str | None = TOKEN,
        *,
        dev: bool = False,
    ) -> None:
        self._roots = roots
        self._env = {**env, "KEEL_API_TOKEN": token} if token is not None else dict(env)
        self._dev = dev
        self.token = token or ""
        self.url = ""
        #: The dashboard's own address (``keel dashboard`` only).
        self.dashboard_url = ""
        self.log: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._readers: list[threading.Thread] = []
        #: After :meth:`stop`: whether SIGTERM stopped the server (exit status 0).
        self.stopped_cleanly = False

    def start(self) -> ApiServer:
        return self._start_dev() if self._dev else self._start_dashboard()

    def _start_dashboard(self) -> ApiServer:
        roots = [arg for root in self._roots for arg in ("-w", str(root))]
        self._proc = subprocess.Popen(
            [*KEEL, "dashboard", "--host", "127.0.0.1", "--port", "0", *roots],
            env=self._env,
            cwd=self._roots[0],  # no keel.toml of the repository's applies
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:  # blocks until the dashboard says where it listens
            line = raw.decode(errors="replace").rstrip()
            self.log.append(line)
            if line.startswith("keel dashboard: http"):
                self.dashboard_url = line.split()[2]
                self.url = self.dashboard_url + "api/v1"
                break
        self._started(self._proc.stdout)
        return self

    def _start_dev(self) -> ApiServer:
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
        self._started(self._proc.stderr)
        return self

    def _started(self, output: IO[bytes]) -> None:
        assert self._proc is not None
        if not self.url:
            self._proc.wait(timeout=30)
            errors = b"" if self._proc.stderr is None else self._proc.stderr.read()
            self.log += errors.decode(errors="replace").splitlines()
            raise AssertionError("the API server did not start:\n" + "\n".join(self.log))
        outputs = {id(o): o for o in (output, self._proc.stderr) if o is not None}
        for stream in outputs.values():  # keep reading so the server never blocks on a pipe
            reader = threading.Thread(target=self._drain, args=(stream,), daemon=True)
            reader.start()
            self._readers.append(reader)

    def _drain(self, output: IO[bytes]) -> None:
        for raw in output:
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
        for reader in self._readers:
            reader.join(timeout=5)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
