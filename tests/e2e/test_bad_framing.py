"""Bad framing on the wire: raw bytes over a pipe to a real ``keel serve`` process.

A wrong ``Content-Length`` (short or long), a 2 MiB header line, garbage header lines and
bodies that are not JSON (or not JSON-RPC) are each logged, answered when they were a
request, and the stream gets back in step: the next request is answered. The process ends
with the status the protocol says: 0 after ``shutdown`` and ``exit``, 1 for an ``exit``
without ``shutdown``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from tests.e2e.editor import GIT_ENV, KEEL_SERVE, WAIT_S

PARSE_ERROR = -32700
INVALID_REQUEST = -32600


def frame(message: Any, *, length_delta: int = 0) -> bytes:
    """A message as an editor frames it; ``length_delta`` makes its Content-Length lie."""
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % (len(body) + length_delta) + body


def status_request(request_id: int) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "workspace/executeCommand",
        "params": {"command": "keel.server.status", "arguments": [{}]},
    }


class RawEditor:
    """Writes raw bytes to ``keel serve`` and reads its framed replies."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.logs: list[str] = []
        self.responses: dict[Any, dict[str, Any]] = {}
        self.unsolicited_errors: list[dict[str, Any]] = []

    async def send(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        await self.process.stdin.drain()

    async def _message(self) -> dict[str, Any]:
        out = self.process.stdout
        assert out is not None
        length = 0
        while True:
            line = await out.readline()
            assert line, f"keel serve closed its stdout; logs: {self.logs}"
            if not line.strip():
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        message: dict[str, Any] = json.loads(await out.readexactly(length))
        return message

    async def response(self, request_id: Any) -> dict[str, Any]:
        """The reply to ``request_id``; the server's own requests are answered meanwhile."""
        while request_id not in self.responses:
            message = await asyncio.wait_for(self._message(), WAIT_S)
            method = message.get("method")
            if method == "window/logMessage":
                self.logs.append(message["params"]["message"])
            elif method is not None and "id" in message:
                await self.send(frame({"jsonrpc": "2.0", "id": message["id"], "result": None}))
            elif method is None:
                self.responses[message.get("id")] = message
        return self.responses.pop(request_id)

    async def status(self, request_id: int) -> dict[str, Any]:
        await self.send(frame(status_request(request_id)))
        reply = await self.response(request_id)
        assert "result" in reply, reply
        return reply

    async def exit_status(self) -> int:
        return await asyncio.wait_for(self.process.wait(), WAIT_S)


@pytest_asyncio.fixture
async def editor(workspace: Path, tmp_path: Path) -> AsyncIterator[RawEditor]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(GIT_ENV, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"))
    env["KEEL_LSP_STALL_S"] = "0.5"
    process = await asyncio.create_subprocess_exec(
        *KEEL_SERVE,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
        cwd=workspace,
    )
    raw = RawEditor(process)
    init = {"processId": None, "rootUri": workspace.as_uri(), "capabilities": {}}
    await raw.send(frame({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init}))
    assert "result" in await raw.response(1)
    await raw.send(frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
    try:
        yield raw
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_short_content_length_is_refused_and_the_next_request_answered(
    editor: RawEditor,
) -> None:
    await editor.send(frame(status_request(2), length_delta=-5))
    refused = await editor.response(2)  # its id was found in what was read
    assert refused["error"]["code"] == PARSE_ERROR
    assert "not JSON" in refused["error"]["message"]
    await editor.status(3)  # the rest of the short body was skipped up to the next header
    assert any("skipped 5 bytes that are not a message header" in m for m in editor.logs)


async def test_a_long_content_length_that_runs_into_the_next_message_is_cut_there(
    editor: RawEditor,
) -> None:
    await editor.send(frame(status_request(2), length_delta=40) + frame(status_request(3)))
    assert "result" in await editor.response(2)
    assert "result" in await editor.response(3)


async def test_a_long_content_length_with_nothing_after_it_is_read_as_it_is(
    editor: RawEditor,
) -> None:
    await editor.send(frame(status_request(2), length_delta=10))
    assert "result" in await editor.response(2)  # after KEEL_LSP_STALL_S, not never
    assert any("stopped at" in m and "Content-Length" in m for m in editor.logs)
    await editor.status(3)


async def test_a_2_mib_header_line_is_discarded(editor: RawEditor) -> None:
    await editor.send(b"X-Junk: " + b"a" * (2 * 1024 * 1024) + b"\r\n" + frame(status_request(2)))
    assert "result" in await editor.response(2)
    assert any("discarded a header line of" in m for m in editor.logs), editor.logs
    await editor.status(3)


async def test_garbage_header_lines_are_skipped(editor: RawEditor) -> None:
    garbage = b"this is not a header\r\n\x00\xff\xfe binary\r\n\r\n\r\nContent-Length: x\r\n"
    await editor.send(garbage + frame(status_request(2)))
    assert "result" in await editor.response(2)
    assert any("that are not a message header" in m for m in editor.logs), editor.logs
    glued = b"trailing junk" + frame(status_request(3))  # a header glued to the garbage
    await editor.send(glued)
    assert "result" in await editor.response(3)


async def test_bodies_that_are_not_json_rpc_get_errors(editor: RawEditor) -> None:
    body = b"{not json at all"
    await editor.send(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    refused = await editor.response(None)
    assert refused["error"]["code"] == PARSE_ERROR
    await editor.send(frame([1, 2, 3]))
    assert (await editor.response(None))["error"]["code"] == INVALID_REQUEST
    await editor.send(frame({"id": 7, "method": "no-jsonrpc-member"}))
    assert (await editor.response(7))["error"]["code"] == INVALID_REQUEST
    invalid = "\xff".encode("latin-1")
    await editor.send(b"Content-Length: 1\r\n\r\n" + invalid)
    assert (await editor.response(None))["error"]["code"] == PARSE_ERROR
    await editor.status(8)
    assert sum("refused a message" in m for m in editor.logs) == 4, editor.logs


async def test_shutdown_then_exit_ends_with_status_0(editor: RawEditor) -> None:
    await editor.send(frame({"jsonrpc": "2.0", "id": 2, "method": "shutdown"}))
    assert (await editor.response(2))["result"] is None
    await editor.send(frame({"jsonrpc": "2.0", "method": "exit"}))
    assert await editor.exit_status() == 0


async def test_exit_without_shutdown_ends_with_status_1(editor: RawEditor) -> None:
    await editor.status(2)
    await editor.send(frame({"jsonrpc": "2.0", "method": "exit"}))
    assert await editor.exit_status() == 1
