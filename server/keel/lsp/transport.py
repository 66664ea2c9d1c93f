"""Serving over stdio or TCP, with a bound on message size, recovery from bad framing and a
clean end.

Messages are cut from the stream here, not by pygls's loop (see :class:`Framer`): a wrong
``Content-Length``, a huge header line, garbage between messages or a body that is not
JSON is logged, answered when it was a request, and the stream gets back in step. A message
above the limit (``KEEL_LSP_MAX_MESSAGE_BYTES``, default 32 MiB) is read through in chunks
and discarded, and a small ``keel/oversized`` message takes its place: for a request (its
``id`` is found in the first bytes) the client gets an ``InvalidParams`` error, otherwise
the user a message. When the connection ends (the editor quit or crashed) running sessions are
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
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO, Protocol, TypeVar

from pygls.exceptions import JsonRpcException
from pygls.io_ import StdoutWriter
from pygls.protocol import JsonRPCProtocol

log = logging.getLogger(__name__)
DEFAULT_LIMIT = 32 * 1024 * 1024
#: Seconds a message body may stop short of its Content-Length before it is read as it is.
DEFAULT_STALL_S = 10.0
#: A header line longer than this is not a header: it is discarded up to its end.
MAX_HEADER_LINE = 64 * 1024
CHUNK = 1024 * 1024
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
_CONTENT_LENGTH = re.compile(rb"Content-Length:[ \t]*(\d{1,15})[ \t]*\r?\n\Z", re.IGNORECASE)
_OTHER_HEADER = re.compile(rb"[A-Za-z][A-Za-z0-9-]*:[^\r\n]*\r?\n\Z")
_ID = re.compile(rb'"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.){0,200}")')
_METHOD = re.compile(rb'"method"\s*:\s*"([^"\\]{1,200})"')


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


ResultT = TypeVar("ResultT")


class Served(Protocol):
    """What the transport needs of the language server it runs (``KeelLanguageServer``)."""

    _stop_event: threading.Event | None

    @property
    def protocol(self) -> JsonRPCProtocol: ...

    @property
    def thread_pool(self) -> ThreadPoolExecutor: ...

    def run_task(self, work: Awaitable[ResultT], name: str) -> asyncio.Task[ResultT]: ...

    def report_server_error(self, error: Exception, source: Any) -> None: ...

    async def abort_requested(self) -> list[str]:
        """Abort the sessions ``keel abort`` asked to stop; their ids."""
        ...

    async def close(self) -> None: ...

    def shutdown(self) -> None: ...


class Source(Protocol):
    """A byte stream: ``read(n)`` returns 1 to ``n`` bytes, or ``b""`` at the end."""

    def read(self, n: int) -> Awaitable[bytes]: ...


class ThreadSource:
    """A regular file as stdin, read in a worker thread (the loop cannot watch a file)."""

    def __init__(self, stream: BinaryIO, executor: Any) -> None:
        self._stream = stream
        self._executor = executor

    def read(self, n: int) -> Awaitable[bytes]:
        read1 = getattr(self._stream, "read1", self._stream.read)
        return asyncio.get_running_loop().run_in_executor(self._executor, read1, n)


class Framer:
    """Cuts a byte stream into message bodies, and gets back in step after bad framing.

    pygls's own loop trusts every header: a ``Content-Length`` that is too short leaves it
    reading the rest of the body as headers and losing every later message; one that is too
    long waits for bytes that never come; a header line longer than the stream's buffer
    ends the loop and the server exits 0 without a word. Here each of those is logged and
    recovered from:

    - text that is not a header (a stray body, garbage) is skipped up to the next
      ``Content-Length`` line, even one that follows the garbage on the same line;
    - a header line over ``max_line`` bytes is discarded up to its end;
    - a body that stops short of its ``Content-Length`` for ``stall_s`` seconds is taken as
      it is (the length was wrong), and a body that runs into the next message's header
      is cut there, the rest read again;
    - a body over ``limit`` bytes is read through in chunks and replaced by a small
      ``keel/oversized`` message (for a request, with its ``id``, so it gets its error).
    """

    def __init__(
        self,
        source: Source,
        *,
        limit: int = DEFAULT_LIMIT,
        stall_s: float | None = DEFAULT_STALL_S,
        max_line: int = MAX_HEADER_LINE,
    ) -> None:
        self._source = source
        self._limit = limit
        self._stall_s = stall_s
        self._max_line = max_line
        self._buffer = bytearray()
        self._ended = False
        self.skipped = 0  # bytes of garbage since the last good header, not yet reported

    async def next_body(self) -> bytes | None:
        """The next message's body, or ``None`` when the stream has ended."""
        length: int | None = None
        while True:
            line = await self._line()
            if line is None:
                self._report_skipped("before the end of the stream")
                return None
            if not line.strip():
                if length is None:
                    continue
                body = await self._body(length)
                if body is not None:
                    return body
                length = None
                continue
            found = _CONTENT_LENGTH.search(line)
            if found:
                self.skipped += found.start()
                self._report_skipped("before a message header")
                length = int(found.group(1))
            elif line[:15].lower() == b"content-length:" or not _OTHER_HEADER.match(line):
                self.skipped += len(line)  # garbage, or a length that is not one

    def push_back(self, data: bytes) -> None:
        """Read ``data`` again before anything else (the start of a message cut in)."""
        self._buffer[:0] = data

    async def _line(self) -> bytes | None:
        discarding = 0
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                if not discarding:
                    return line
                log.error(
                    "discarded a header line of %d bytes (over %d): not a message header",
                    discarding + len(line),
                    self._max_line,
                )
                discarding = 0
                continue
            if len(self._buffer) > self._max_line:
                discarding += len(self._buffer)
                self._buffer.clear()
            if not await self._fill(None):
                rest = bytes(self._buffer)
                self._buffer.clear()
                self.skipped += len(rest) + discarding
                return rest or None

    async def _body(self, length: int) -> bytes | None:
        """``length`` bytes; ``None`` when there is nothing usable (logged)."""
        if length > self._limit:
            return await self._skip(length)
        while len(self._buffer) < length:
            try:
                more = await self._fill(self._stall_s)
            except TimeoutError:
                got = bytes(self._buffer)
                self._buffer.clear()
                log.error(
                    "a message stopped at %d of the %d bytes its Content-Length announced "
                    "(nothing more for %gs); reading it as it is",
                    len(got),
                    length,
                    self._stall_s,
                )
                return got or None
            if not more:
                log.warning("the connection ended inside a message (%d bytes)", length)
                self._buffer.clear()
                return None
        body = bytes(self._buffer[:length])
        del self._buffer[:length]
        return body

    async def _skip(self, length: int) -> bytes | None:
        remaining = length
        head = b""
        while remaining > 0:
            if not self._buffer and not await self._fill(self._stall_s):
                return None  # the client went away mid-message: the end of the connection
            take = min(remaining, len(self._buffer))
            if len(head) < 4096:
                head += bytes(self._buffer[: min(take, 4096 - len(head))])
            del self._buffer[:take]
            remaining -= take
        log.warning("skipped a message of %d bytes (limit %d)", length, self._limit)
        return oversized(head, length, self._limit)

    async def _fill(self, wait_s: float | None) -> bool:
        """Read more into the buffer; False at the end. TimeoutError after ``wait_s``."""
        if self._ended:
            return False
        if wait_s is None:
            data = await self._source.read(CHUNK)
        else:
            data = await asyncio.wait_for(self._source.read(CHUNK), wait_s)
        if not data:
            self._ended = True
            return False
        self._buffer += data
        return True

    def _report_skipped(self, where: str) -> None:
        if self.skipped:
            log.error("skipped %d bytes that are not a message header %s", self.skipped, where)
            self.skipped = 0


async def read_messages(framer: Framer, server: Served, stop: threading.Event) -> None:
    """Hand every message to pygls until the stream ends; bad ones are answered and logged."""
    protocol = server.protocol
    while not stop.is_set():
        body = await framer.next_body()
        if body is None:
            return
        try:
            message = json.loads(body, object_hook=protocol.structure_message)
        except ValueError as exc:
            cut = body.find(b"Content-Length:", 1)
            if cut > 0:  # the announced length ran into the next message: read that again
                framer.push_back(body[cut:])
                body = body[:cut]
                try:
                    message = json.loads(body, object_hook=protocol.structure_message)
                except ValueError:
                    _refuse(server, body, PARSE_ERROR, f"the message is not JSON ({exc})")
                    continue
            else:
                _refuse(server, body, PARSE_ERROR, f"the message is not JSON ({exc})")
                continue
        except Exception as exc:  # pygls could not structure it (InvalidParams, ...)
            log.error("could not read a message: %s", exc)
            server.report_server_error(exc, JsonRpcException)
            continue
        if not hasattr(message, "jsonrpc"):
            _refuse(server, body, INVALID_REQUEST, "the message is not a JSON-RPC 2.0 object")
            continue
        try:
            protocol.handle_message(message)
        except Exception as exc:
            log.exception("Unable to handle message")
            server.report_server_error(exc, JsonRpcException)


def _refuse(server: Served, body: bytes, code: int, reason: str) -> None:
    """Log a message that cannot be handled and answer it with a JSON-RPC error.

    The id is found if the text has one (else ``null``, as JSON-RPC says), so a client
    waiting for that request gets its answer instead of waiting for ever.
    """
    found = _ID.search(body[:4096])
    msg_id: Any = None
    if found:
        try:
            msg_id = json.loads(found.group(1))
        except ValueError:
            msg_id = None
    log.error("refused a message of %d bytes: %s", len(body), reason)
    error = {"code": code, "message": f"Keel: {reason}"}
    # pygls has no public call for an error without a request; this is its own writer path.
    server.protocol._send_data({"jsonrpc": "2.0", "id": msg_id, "error": error})


def stdin_source(executor: Any) -> Source:
    """stdin read by the event loop itself (no thread hand-off per line), where it can be.

    pygls reads stdin in a worker thread, which costs thread switches for every message;
    under load (checkers and test runners busy on every core) each switch can wait for a
    time slice. A pipe, socket or terminal is read directly; anything else (a regular file)
    is read in a worker thread.
    """
    loop = asyncio.get_running_loop()
    return _PipeSource(loop, executor)


class _PipeSource:
    def __init__(self, loop: asyncio.AbstractEventLoop, executor: Any) -> None:
        self._loop = loop
        self._executor = executor
        self._inner: Source | None = None

    async def read(self, n: int) -> bytes:
        if self._inner is None:
            reader = asyncio.StreamReader(limit=CHUNK)
            try:
                await self._loop.connect_read_pipe(
                    lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer
                )
                self._inner = reader
            except (ValueError, OSError):
                self._inner = ThreadSource(sys.stdin.buffer, self._executor)
        return await self._inner.read(n)


async def _serve(
    server: Served,
    source: Source | None,
    stop: threading.Event,
    limit: int,
    stall_s: float | None,
) -> None:
    loop = asyncio.get_running_loop()
    if source is None:
        source = stdin_source(server.thread_pool)
    stopped: asyncio.Future[None] = loop.create_future()
    loop.add_signal_handler(
        signal.SIGTERM, lambda: server.run_task(_terminate(server, stopped), "SIGTERM")
    )
    framer = Framer(source, limit=limit, stall_s=stall_s)
    reading = loop.create_task(read_messages(framer, server, stop))
    try:
        await asyncio.wait({reading, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        reading.cancel()
        await server.close()


async def _terminate(server: Served, stopped: asyncio.Future[None]) -> None:
    """``keel abort`` signals the process of a run: abort those sessions, keep serving.

    Without an abort request on record the signal is for the server: it stops cleanly.
    """
    requested = await server.abort_requested()
    if not requested and not stopped.done():
        stopped.set_result(None)


def serve_stdio(
    server: Served, limit: int = DEFAULT_LIMIT, stall_s: float | None = DEFAULT_STALL_S
) -> int:
    """Serve on stdin/stdout; the exit status: 0 after ``shutdown`` and ``exit``, else 1
    for an ``exit`` without ``shutdown`` (LSP), and 0 when the client closes stdin."""
    stop = threading.Event()
    server._stop_event = stop
    server.protocol.set_writer(StdoutWriter(sys.stdout.buffer))
    status = 0
    try:
        asyncio.run(_serve(server, None, stop, limit, stall_s))
    except SystemExit as exc:  # pygls's ``exit`` handler
        status = _exit_status(exc)
    except (KeyboardInterrupt, BrokenPipeError):
        pass
    finally:
        server.shutdown()
    return status


def serve_tcp(
    server: Served,
    host: str,
    port: int,
    limit: int = DEFAULT_LIMIT,
    stall_s: float | None = DEFAULT_STALL_S,
) -> int:
    """One client over TCP; the server ends when it disconnects. Exit status as for stdio."""
    stop = threading.Event()
    server._stop_event = stop

    async def main() -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            server.protocol.set_writer(writer)
            try:
                await _serve(server, reader, stop, limit, stall_s)
            finally:
                if not done.done():
                    done.set_result(None)

        listener = await asyncio.start_server(connection, host, port)
        sys.stderr.write(f"keel: listening on {host}:{port}\n")  # for whoever started it
        sys.stderr.flush()
        async with listener:
            await done

    status = 0
    try:
        asyncio.run(main())
    except SystemExit as exc:
        status = _exit_status(exc)
    except (KeyboardInterrupt, BrokenPipeError, asyncio.IncompleteReadError):
        pass
    finally:
        server.shutdown()
    return status


def _exit_status(exc: SystemExit) -> int:
    code = exc.code
    return code if isinstance(code, int) else (0 if code is None else 1)
