"""Serving over stdio or TCP, with a bound on message size and a clean end.

pygls reads whatever ``Content-Length`` says into memory. A message above the limit
(``KEEL_LSP_MAX_MESSAGE_BYTES``, default 32 MiB) is read through in chunks and discarded
instead, and a small ``keel/oversized`` message takes its place: for a request (its ``id``
is found in the first bytes) the client gets an ``InvalidParams`` error, otherwise the user
a message. When the connection ends (the editor quit or crashed) running sessions are
cancelled, which ends them ``aborted`` with everything in the store, so ``keel resume`` or
``keel.server.resume`` continues them, and the store is closed before the process exits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import sys
import threading
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Protocol

from pygls.io_ import StdinAsyncReader, StdoutWriter, run_async

if TYPE_CHECKING:
    from keel.lsp.server import KeelLanguageServer

log = logging.getLogger(__name__)
DEFAULT_LIMIT = 32 * 1024 * 1024
CHUNK = 1024 * 1024
_ID = re.compile(rb'"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.){0,200}")')
_METHOD = re.compile(rb'"method"\s*:\s*"([^"\\]{1,200})"')


class AsyncReader(Protocol):
    def readline(self) -> Awaitable[bytes]: ...

    def readexactly(self, n: int) -> Awaitable[bytes]: ...


def oversized(head: bytes, size: int, limit: int) -> bytes:
    """The stand-in for a skipped message: a request keeps its id so it gets its error."""
    params: dict[str, Any] = {"bytes": size, "limit": limit}
    method = _METHOD.search(head)
    if method:
        params["method"] = method.group(1).decode("utf-8", "replace")
    cut = head.find(b'"params"')
    found = _ID.search(head if cut < 0 else head[:cut])
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": "keel/oversized", "params": params}
    if found:
        params["request"] = True
        message["id"] = json.loads(found.group(1))
    return json.dumps(message).encode()


class LimitedReader:
    """Wraps a pygls reader; bodies over ``limit`` bytes are skipped, not loaded."""

    def __init__(self, inner: AsyncReader, limit: int) -> None:
        self._inner = inner
        self._limit = limit

    def readline(self) -> Awaitable[bytes]:
        return self._inner.readline()

    async def readexactly(self, n: int) -> bytes:
        try:
            if n <= self._limit:
                return await self._inner.readexactly(n)
            head = await self._inner.readexactly(min(n, 4096))
            remaining = n - len(head)
            while remaining > 0:
                got = await self._inner.readexactly(min(remaining, CHUNK))
                if not got:
                    return b""
                remaining -= len(got)
        except asyncio.IncompleteReadError:
            return b""  # the client went away mid-message: the end of the connection
        log.warning("skipped a message of %d bytes (limit %d)", n, self._limit)
        return oversized(head, n, self._limit)


async def stdin_reader(executor: Any) -> AsyncReader:
    """stdin read by the event loop itself (no thread hand-off per line), where it can be.

    pygls reads stdin in a worker thread, which costs thread switches for every message;
    under load (checkers and test runners busy on every core) each switch can wait for a
    time slice. A pipe, socket or terminal is read directly; anything else (a regular file)
    falls back to pygls's threaded reader.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1024 * 1024)
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    except (ValueError, OSError):
        return StdinAsyncReader(sys.stdin.buffer, executor)
    return reader


async def _serve(
    server: KeelLanguageServer, reader: AsyncReader | None, stop: threading.Event, limit: int
) -> None:
    loop = asyncio.get_running_loop()
    if reader is None:
        reader = LimitedReader(await stdin_reader(server.thread_pool), limit)
    stopped: asyncio.Future[None] = loop.create_future()
    loop.add_signal_handler(
        signal.SIGTERM, lambda: server.run_task(_terminate(server, stopped), "SIGTERM")
    )
    reading = loop.create_task(
        run_async(
            stop_event=stop,
            reader=reader,
            protocol=server.protocol,
            logger=log,
            error_handler=server.report_server_error,
        )
    )
    try:
        await asyncio.wait({reading, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        reading.cancel()
        await server.close()


async def _terminate(server: KeelLanguageServer, stopped: asyncio.Future[None]) -> None:
    """``keel abort`` signals the process of a run: abort those sessions, keep serving.

    Without an abort request on record the signal is for the server: it stops cleanly.
    """
    host = server.opened_host
    requested = []
    for session_id in list(server.runs):
        if host is not None and await host.store.abort_requested(session_id):
            requested.append(session_id)
            server.runs[session_id].cancel("aborted with keel abort")
    if not requested and not stopped.done():
        stopped.set_result(None)


def serve_stdio(server: KeelLanguageServer, limit: int = DEFAULT_LIMIT) -> None:
    stop = threading.Event()
    server._stop_event = stop
    server.protocol.set_writer(StdoutWriter(sys.stdout.buffer))
    try:
        asyncio.run(_serve(server, None, stop, limit))
    except (KeyboardInterrupt, SystemExit, BrokenPipeError):
        pass
    finally:
        server.shutdown()  # type: ignore[no-untyped-call]


def serve_tcp(server: KeelLanguageServer, host: str, port: int, limit: int = DEFAULT_LIMIT) -> None:
    """One client over TCP; the server ends when it disconnects."""
    stop = threading.Event()
    server._stop_event = stop

    async def main() -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            server.protocol.set_writer(writer)
            try:
                await _serve(server, LimitedReader(reader, limit), stop, limit)
            finally:
                if not done.done():
                    done.set_result(None)

        listener = await asyncio.start_server(connection, host, port)
        sys.stderr.write(f"keel: listening on {host}:{port}\n")  # for whoever started it
        sys.stderr.flush()
        async with listener:
            await done

    try:
        asyncio.run(main())
    except (KeyboardInterrupt, SystemExit, BrokenPipeError, asyncio.IncompleteReadError):
        pass
    finally:
        server.shutdown()  # type: ignore[no-untyped-call]
