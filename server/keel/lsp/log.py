"""Logging for a server whose stdout is the protocol: records go to ``window/logMessage``.

Nothing may ever be written to stdout (it would corrupt the JSON-RPC stream), so ``keel
serve`` sends its log records to the client, which shows them in its output panel (VS Code)
or log (Neovim). Records from before the client is ready are kept and flushed once it is;
pygls's own records are dropped (they would log every message sent, including these).
Records may come from worker threads (git, SQLite); they are handed to the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from lsprotocol import types as T
from pygls.exceptions import JsonRpcException

_LEVELS = (
    (logging.ERROR, T.MessageType.Error),
    (logging.WARNING, T.MessageType.Warning),
    (logging.INFO, T.MessageType.Info),
)


def message_type(levelno: int) -> T.MessageType:
    for threshold, kind in _LEVELS:
        if levelno >= threshold:
            return kind
    return T.MessageType.Log


class WindowLogMessageHandler(logging.Handler):
    """A ``logging.Handler`` that forwards records as ``window/logMessage``."""

    def __init__(self, level: int = logging.INFO, backlog: int = 500) -> None:
        super().__init__(level)
        self._send: Callable[[T.LogMessageParams], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: deque[T.LogMessageParams] = deque(maxlen=backlog)
        self.addFilter(lambda record: not record.name.startswith("pygls"))
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def connect(
        self, send: Callable[[T.LogMessageParams], None], loop: asyncio.AbstractEventLoop
    ) -> None:
        """Start sending (the client is initialized); flush what was logged before."""
        self._send, self._loop = send, loop
        while self._pending:
            send(self._pending.popleft())

    def disconnect(self) -> None:
        self._send = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            params = T.LogMessageParams(
                type=message_type(record.levelno), message=self.format(record)
            )
            send, loop = self._send, self._loop
            if send is None or loop is None or loop.is_closed():
                self._pending.append(params)
                return
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                send(params)
            else:
                loop.call_soon_threadsafe(send, params)
        except Exception:  # a log record must never take the server down
            self.handleError(record)


def expected(record: logging.LogRecord) -> bool:
    """False for pygls's tracebacks of errors Keel answers on purpose (a refused request)."""
    error = record.exc_info[1] if record.exc_info else None
    return not isinstance(error, JsonRpcException)


def configure(handler: WindowLogMessageHandler) -> None:
    """Root logging for ``keel serve``: the client, plus warnings to stderr; never stdout."""
    stderr = logging.StreamHandler()  # sys.stderr
    stderr.setLevel(logging.WARNING)
    stderr.addFilter(expected)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.handlers = [handler, stderr]
    logging.getLogger("pygls").setLevel(logging.WARNING)  # it logs every message at INFO
