"""Command arguments and forwarded diagnostics are validated before anything acts on them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pygls.exceptions import JsonRpcInvalidParams

from keel.lsp.args import ApproveArgs, EditorDiagnosticsParams, NoArgs, RejectArgs, parse_args
from keel.lsp.transport import Framer, oversized


def test_one_json_object_in_camel_case() -> None:
    parsed = parse_args("keel.server.approve", ApproveArgs, ({"bundleId": "b1", "files": ["u"]},))
    assert parsed.bundle_id == "b1" and parsed.files == ["u"]
    assert parse_args("keel.server.status", NoArgs, ()) == NoArgs()
    for args, says in [
        ((), "bundleId: Field required"),
        (([],), "got list"),
        (({"bundleId": "b"}, {}), "got 2 arguments"),
        (({"bundleId": "b", "extra": 1},), "extra: Extra inputs are not permitted"),
    ]:
        with pytest.raises(JsonRpcInvalidParams) as caught:
            parse_args("keel.server.approve", ApproveArgs, args)
        assert says in str(caught.value) and "keel.server.approve" in str(caught.value)


def test_forwarded_diagnostics_keep_what_is_usable() -> None:
    params = EditorDiagnosticsParams.model_validate(
        {
            "uri": "file:///w/a.py",
            "version": 3,
            "positionEncoding": "utf-16",
            "diagnostics": [
                {"range": {"start": {"line": 1, "character": 2}}, "message": "m", "severity": 1},
                {"message": "no range"},
                {"range": {"start": {"line": -1}}, "message": "negative"},
                {"range": {"start": {"line": 0}}, "message": "x" * 5000, "code": 7},
            ],
        }
    )
    diagnostics, skipped = params.parsed()
    assert skipped == 2 and [d.line for d in diagnostics] == [1, 0]
    assert diagnostics[1].code == "7" and len(diagnostics[1].message) == 2000


def test_an_oversized_request_keeps_its_id() -> None:
    head = b'{"jsonrpc": "2.0", "id": 42, "method": "workspace/executeCommand", "params": {"id": 9'
    message = json.loads(oversized(head, 10_000_000, 1_000))
    assert message["id"] == 42 and message["method"] == "keel/oversized"
    assert message["params"] == {
        "bytes": 10_000_000,
        "limit": 1_000,
        "method": "workspace/executeCommand",
        "request": True,
    }
    note = json.loads(oversized(b'{"method": "keel/editorDiagnostics", "params": {"id": 1', 5, 1))
    assert "id" not in note and "request" not in note["params"]


def test_framer_skips_a_large_body_in_chunks_and_stays_in_step() -> None:
    class Chunks:
        def __init__(self, data: bytes) -> None:
            self.data, self.reads = data, []

        async def read(self, n: int) -> bytes:
            self.reads.append(n)
            out, self.data = self.data[:n], self.data[n:]
            return out

    body = b'{"jsonrpc":"2.0","id":"r1","method":"m","params":"' + b"x" * 3_000_000 + b'"}'
    after = b'{"jsonrpc":"2.0","method":"n"}'
    inner = Chunks(
        b"Content-Length: %d\r\n\r\n" % len(body) + body + b"Content-Length: 30\r\n\r\n" + after
    )
    framer = Framer(inner, limit=1000)

    async def bodies() -> list[bytes]:
        return [b for b in [await framer.next_body(), await framer.next_body()] if b]

    skipped, following = asyncio.run(bodies())
    assert json.loads(skipped)["id"] == "r1" and json.loads(skipped)["method"] == "keel/oversized"
    assert following == after and max(inner.reads) <= 1024 * 1024


class Stream:
    """A Source over fixed chunks; ``b""`` at the end (as a closed pipe)."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    async def read(self, n: int) -> bytes:
        if not self.chunks:
            return b""
        chunk = self.chunks.pop(0)
        if len(chunk) > n:
            self.chunks.insert(0, chunk[n:])
        return chunk[:n]


def bodies(framer: Framer) -> list[bytes]:
    async def all_bodies() -> list[bytes]:
        out = []
        while (body := await framer.next_body()) is not None:
            out.append(body)
        return out

    return asyncio.run(all_bodies())


def framed(body: bytes, length: int | None = None) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % (len(body) if length is None else length) + body


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        ([framed(b"{}") + framed(b"[1]")], [b"{}", b"[1]"]),
        ([framed(b"{}")[:9], framed(b"{}")[9:]], [b"{}"]),  # split anywhere
        ([b"Content-Type: x\r\n" + framed(b"{}")], [b"{}"]),  # another header is fine
        ([b"content-length: 2\n\n{}"], [b"{}"]),  # any case, bare newlines
        ([b"\r\n\r\n" + framed(b"{}")], [b"{}"]),  # stray blank lines
        ([b"junk" + framed(b"{}")], [b"{}"]),  # a header glued to garbage
        ([b"Content-Length: -1\r\n\r\n" + framed(b"{}")], [b"{}"]),  # not a length
        ([b"Content-Length: 99999999999999999999\r\n\r\n" + framed(b"{}")], [b"{}"]),
        ([b"Content-Length: 2\r\n"], []),  # the end before the body
        ([framed(b"{}", 10)], []),  # the end inside the body
        ([b"x" * 200_000 + b"\r\n" + framed(b"{}")], [b"{}"]),  # a huge header line
        ([b"x" * 200_000], []),  # a huge line, then the end
    ],
)
def test_framer_recovers_from_bad_framing(stream: list[bytes], expected: list[bytes]) -> None:
    assert bodies(Framer(Stream(*stream), max_line=64 * 1024)) == expected


def test_framer_reads_a_body_that_stops_short_as_it_is() -> None:
    class Stalls(Stream):
        async def read(self, n: int) -> bytes:
            if not self.chunks:
                await asyncio.Event().wait()  # the client waits for an answer; nothing comes
            return await super().read(n)

    framer = Framer(Stalls(framed(b'{"id": 1}', 50)), stall_s=0.05)

    async def first() -> bytes | None:
        return await framer.next_body()

    assert asyncio.run(first()) == b'{"id": 1}'


def test_framer_push_back_reads_the_cut_in_message_next() -> None:
    framer = Framer(Stream(framed(b"[2]")))

    async def run() -> list[bytes | None]:
        framer.push_back(framed(b"[1]"))
        return [await framer.next_body(), await framer.next_body(), await framer.next_body()]

    assert asyncio.run(run()) == [b"[1]", b"[2]", None]


@pytest.mark.parametrize(
    ("argument", "problem"),
    [
        ({"bundleId": "b", "hunks": []}, "at least 1 item"),
        ({"bundleId": "b", "hunks": ["a", "a"]}, "hunk ids given twice: a"),
        ({"bundleId": "b", "hunks": ["a"], "files": ["file:///x"]}, "files or hunks, not both"),
        ({"bundleId": "b", "hunks": [""]}, "at least 1 character"),
        ({"bundleId": "b", "hunks": ["a" * 65]}, "at most 64 characters"),
    ],
)
@pytest.mark.parametrize("model", [ApproveArgs, RejectArgs])
def test_hunks_are_checked(model: type[Any], argument: dict[str, Any], problem: str) -> None:
    with pytest.raises(JsonRpcInvalidParams, match=problem):
        parse_args("keel.server.approve", model, (argument,))


def test_too_many_hunks_are_refused() -> None:
    hunks = [f"{n:012x}" for n in range(10_001)]
    with pytest.raises(JsonRpcInvalidParams, match="at most 10000 items"):
        parse_args("keel.server.approve", ApproveArgs, ({"bundleId": "b", "hunks": hunks},))
    ok = parse_args("keel.server.reject", RejectArgs, ({"bundleId": "b", "hunks": ["a1"]},))
    assert ok.hunks == ["a1"] and ok.files is None
