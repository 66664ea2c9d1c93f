"""A fake OpenAI/Anthropic HTTP server on loopback, for tests and benchmarks.

The providers are tested through the real SDKs over real HTTP, so what is tested is what
runs against a real model: headers, request bodies, status codes, timeouts. The server
answers ``POST /v1/chat/completions`` (OpenAI shape) and ``POST /v1/messages`` (Anthropic
shape) from the same transcript entries that ``replay:`` reads, matched by the request's
``X-Keel-Tier``, ``X-Keel-Node`` and ``X-Keel-Attempt`` headers. It records every request and
can inject faults (error statuses, requests that never get an answer, added latency, replies
trickled a byte at a time, usage counts a real server should never send). ``dialect`` makes
it refuse structured-output forms the way real OpenAI-compatible servers do (see
:data:`DIALECTS`), and it answers a forced function call with a call to that function.
Synchronise with :meth:`FakeModelServer.wait_for_requests`, never with sleeps.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from keel.providers.replay import (
    EntryKey,
    ReplyKey,
    TranscriptEntry,
    describe_key,
    index_entries,
    select_entry,
)


class Headers(Mapping[str, str]):
    """Request headers with case-insensitive lookup."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items = {name.lower(): value for name, value in items}

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it; ``body`` is the parsed JSON (None if not JSON)."""

    method: str
    path: str
    headers: Headers
    body: Any


class FakeModelServer:
    """A ThreadingHTTPServer on 127.0.0.1, in a daemon thread; use it as a context manager."""

    def __init__(
        self,
        entries: Iterable[Mapping[str, Any]] = (),
        *,
        latency_s: float = 0.0,
        dialect: str = "openai",
        port: int = 0,
    ) -> None:
        """``port`` 0 picks a free one; give a closed server's port to restart "the same"
        endpoint (what a store remembers per endpoint is keyed by its URL)."""
        if dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}: one of {', '.join(DIALECTS)}")
        self._entries: dict[EntryKey, TranscriptEntry] = index_entries(entries, "fake server")
        self.latency_s = latency_s
        self.dialect = dialect
        self._lock = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._faults: deque[tuple[int, str | None]] = deque()
        self._hangs = 0
        self._hang_keys: set[EntryKey] = set()
        self._hold_keys: set[EntryKey] = set()
        self._released = threading.Event()
        self._trickles: deque[float] = deque()
        self._usages: deque[tuple[object, object]] = deque()
        self._truncations = 0
        self._closing = threading.Event()
        self._ids = itertools.count(1)
        self._httpd = _Server(("127.0.0.1", port), _Handler, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeModelServer:
        if not self._started:
            self._thread.start()
            self._started = True
        return self

    def close(self) -> None:
        """Stop serving, release hanging requests and wait for every handler thread."""
        self._closing.set()
        self._released.set()
        if self._started:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def load(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Answer from these transcript entries from now on (a follow-up session's)."""
        indexed = index_entries(entries, "fake server")
        with self._lock:
            self._entries = indexed

    # -- addresses -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    # -- fault injection and inspection ----------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 500, message: str | None = None) -> None:
        """Answer the next ``n`` requests with ``status`` and an error body."""
        with self._lock:
            self._faults.extend([(status, message)] * n)

    def hang_next(self, n: int = 1) -> None:
        """Never answer the next ``n`` requests (they are released when the server closes)."""
        with self._lock:
            self._hangs += n

    def trickle_next(self, n: int = 1, interval_s: float = 1.0) -> None:
        """Send the next ``n`` answers one byte every ``interval_s``, status line first.

        Every read then gets a byte well within any per-read timeout, so only a deadline on
        the whole reply stops the client; closing the server ends the trickle.
        """
        with self._lock:
            self._trickles.extend([interval_s] * n)

    def usage_next(self, input_tokens: object, output_tokens: object) -> None:
        """Report these token counts (any JSON value) in the next answer's usage."""
        with self._lock:
            self._usages.append((input_tokens, output_tokens))

    def truncate_next(self, n: int = 1) -> None:
        """Cut the next ``n`` OpenAI answers in half with ``finish_reason`` ``length``, as a
        server does when the reply reaches ``max_tokens``."""
        with self._lock:
            self._truncations += n

    def _take_truncation(self) -> bool:
        with self._lock:
            if self._truncations <= 0:
                return False
            self._truncations -= 1
            return True

    def hang_on(self, tier: str, node: str | None, attempt: int, turn: int | None = None) -> None:
        """Never answer the next request for this (tier, node, attempt), wherever it comes;
        with ``turn``, only that exploration turn's request (``X-Keel-Turn``, 1 when absent)."""
        with self._lock:
            self._hang_keys.add((tier, node, attempt, turn))

    def hold_on(self, tier: str, node: str | None, attempt: int) -> None:
        """Hold the next request for this (tier, node, attempt) unanswered until
        :meth:`release`, then answer it as usual (a session paused mid-node, resumed at will)."""
        with self._lock:
            self._hold_keys.add((tier, node, attempt, None))

    def release(self) -> None:
        """Answer every held request (and any held later)."""
        self._released.set()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least ``n`` requests arrived; TimeoutError after ``timeout`` s."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._requests) >= n, timeout):
                got = len(self._requests)
                raise TimeoutError(f"fake model server saw {got} of {n} requests in {timeout}s")
            return list(self._requests)

    # -- used by the handler ---------------------------------------------------------------

    def _remember(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)
            self._lock.notify_all()

    def _record(self, request: RecordedRequest) -> tuple[str, int | None, str | None]:
        """Store the request and decide its fate: ("hang"|"hold"|"fail"|"answer", ...)."""
        with self._lock:  # re-entrant: arrival order and fate are decided together
            self._remember(request)
            key = _key_of(request.headers)
            for hang in ((*key, None), (*key, _turn_of(request.headers))):
                if hang in self._hang_keys:
                    self._hang_keys.discard(hang)
                    return "hang", None, None
            if self._hangs > 0:
                self._hangs -= 1
                return "hang", None, None
            if (*key, None) in self._hold_keys:
                self._hold_keys.discard((*key, None))
                return "hold", None, None
            if self._faults:
                status, message = self._faults.popleft()
                return "fail", status, message
            return "answer", None, None

    def _take_trickle(self) -> float | None:
        with self._lock:
            return self._trickles.popleft() if self._trickles else None

    def _take_usage(self) -> tuple[object, object] | None:
        with self._lock:
            return self._usages.popleft() if self._usages else None

    def _entry_for(self, request: RecordedRequest) -> TranscriptEntry | ReplyKey:
        key = _key_of(request.headers)
        turn = _turn_of(request.headers)
        found = select_entry(self._entries, key, turn, _must_answer(request.body))
        return key if found is None else found

    def _next_id(self) -> int:
        with self._lock:
            return next(self._ids)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], fake: FakeModelServer
    ) -> None:
        super().__init__(address, handler)
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "FakeModelServer/1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``requests`` instead of a log."""

    def do_GET(self) -> None:
        self.server.fake._remember(self._read_request())
        self._send_json(404, _error_body(self.path, 404, f"no route GET {self.path}"))

    def do_POST(self) -> None:
        fake = self.server.fake
        request = self._read_request()
        fate, status, message = fake._record(request)
        if fate == "hang":
            fake._closing.wait()
            self.close_connection = True
            return
        if fate == "hold":
            fake._released.wait()  # set by release() and by close()
            if fake._closing.is_set():
                self.close_connection = True
                return
        if fake.latency_s > 0:
            fake._closing.wait(fake.latency_s)
        if fate == "fail" and status is not None:
            text = message or f"injected failure {status}"
            self._send_json(status, _error_body(self.path, status, text))
            return
        refused = _refusal(fake.dialect, request)
        if refused is not None:
            self._send_json(refused[0], _error_body(self.path, *refused))
            return
        self._answer(request)

    def _read_request(self) -> RecordedRequest:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = Headers(self.headers.items())
        return RecordedRequest(method=self.command, path=self.path, headers=headers, body=body)

    def _answer(self, request: RecordedRequest) -> None:
        route = urlsplit(request.path).path
        if route not in ("/v1/chat/completions", "/v1/messages"):
            self._send_json(404, _error_body(route, 404, f"no route POST {request.path}"))
            return
        found = self.server.fake._entry_for(request)
        if not isinstance(found, TranscriptEntry):
            text = f"no transcript reply for {describe_key(found)}"
            self._send_json(404, _error_body(request.path, 404, text))
            return
        fake = self.server.fake
        number = fake._next_id()
        usage = fake._take_usage() or _usage(found, request.body)
        if route == "/v1/chat/completions":
            body = _openai_reply(found, request.body, number, usage)
            if fake._take_truncation():
                choice = body["choices"][0]
                choice["finish_reason"] = "length"
                text = choice["message"]["content"] or ""
                choice["message"]["content"] = text[: len(text) // 2]
        else:
            body = _anthropic_reply(found, request.body, number, usage)
        interval = fake._take_trickle()
        if interval is None:
            self._send_json(200, body)
        else:
            self._trickle(body, interval)

    def _trickle(self, body: Mapping[str, Any], interval_s: float) -> None:
        data = json.dumps(body).encode("utf-8")
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode("ascii")
        self.close_connection = True
        closing = self.server.fake._closing
        try:
            for i in range(len(head) + len(data)):
                self.wfile.write((head + data)[i : i + 1])
                self.wfile.flush()
                if closing.wait(interval_s):
                    return
        except (BrokenPipeError, ConnectionResetError):
            return  # the client gave up: what a deadline is for

    def _send_json(self, status: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout); nothing to do


def _key_of(headers: Headers) -> ReplyKey:
    attempt = headers.get("X-Keel-Attempt", "")
    return (
        headers.get("X-Keel-Tier", ""),
        headers.get("X-Keel-Node") or None,
        int(attempt) if attempt.isdigit() else 0,
    )


def _turn_of(headers: Headers) -> int:
    turn = headers.get("X-Keel-Turn", "")
    return int(turn) if turn.isdigit() else 1


def _must_answer(body: object) -> bool:
    """Whether the request offers no exploration tool to call (as a real API would see it):
    OpenAI without ``tools`` or with ``tool_choice`` ``none``; Anthropic forcing one tool."""
    if not isinstance(body, Mapping):
        return True
    choice = body.get("tool_choice")
    if "messages" in body and "max_tokens" in body:  # Anthropic
        return not isinstance(choice, Mapping) or choice.get("type") == "tool"
    return not body.get("tools") or choice == "none" or isinstance(choice, Mapping)


def _estimate_tokens(value: object) -> int:
    """A deterministic stand-in for a tokenizer: about four characters per token."""
    return max(1, len(json.dumps(value)) // 4)


def _usage(entry: TranscriptEntry, body: object) -> tuple[object, object]:
    if entry.input_tokens or entry.output_tokens:
        return entry.input_tokens, entry.output_tokens
    return _estimate_tokens(body), _estimate_tokens(entry.text)


def _openai_reply(
    entry: TranscriptEntry, body: Any, number: int, usage: tuple[object, object]
) -> dict[str, Any]:
    tokens_in, tokens_out = usage
    total = (
        tokens_in + tokens_out if isinstance(tokens_in, int) and isinstance(tokens_out, int) else 0
    )
    model = body.get("model", "fake") if isinstance(body, dict) else "fake"
    return {
        "id": f"chatcmpl-fake-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": _openai_message(entry, number, _forced_function(body)),
                "finish_reason": "tool_calls" if entry.tool_calls else "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "total_tokens": total,
        },
    }


def _openai_message(entry: TranscriptEntry, number: int, forced: str | None) -> dict[str, Any]:
    if not entry.tool_calls and forced is not None:  # the answer, as the forced call
        call = {
            "id": f"call_fake_{number}",
            "type": "function",
            "function": {"name": forced, "arguments": entry.text},
        }
        return {"role": "assistant", "content": None, "refusal": None, "tool_calls": [call]}
    if not entry.tool_calls:
        return {"role": "assistant", "content": entry.text, "refusal": None}
    calls = [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
        }
        for call in entry.calls(f"call_fake_{number}")
    ]
    return {"role": "assistant", "content": None, "refusal": None, "tool_calls": calls}


def _anthropic_reply(
    entry: TranscriptEntry, body: Any, number: int, usage: tuple[object, object]
) -> dict[str, Any]:
    tokens_in, tokens_out = usage
    request = body if isinstance(body, dict) else {}
    blocks: list[dict[str, Any]] = [
        {"type": "tool_use", "id": call.id, "name": call.name, "input": dict(call.arguments)}
        for call in entry.calls(f"toolu_fake_{number}")
    ]
    if blocks:
        content, stop_reason = blocks, "tool_use"
    elif entry.raw:
        content, stop_reason = [{"type": "text", "text": entry.text}], "end_turn"
    else:
        answer = {
            "type": "tool_use",
            "id": f"toolu_fake_{number}",
            "name": _tool_name(request),
            "input": entry.reply,
        }
        content, stop_reason = [answer], "tool_use"
    return {
        "id": f"msg_fake_{number}",
        "type": "message",
        "role": "assistant",
        "model": request.get("model", "fake"),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out},
    }


def _tool_name(request: Mapping[str, Any]) -> str:
    """The answer tool: the forced one, else the last offered (exploration tools come first)."""
    choice = request.get("tool_choice")
    if isinstance(choice, Mapping) and isinstance(choice.get("name"), str):
        return str(choice["name"])
    tools = request.get("tools")
    if isinstance(tools, list) and tools and isinstance(tools[-1], Mapping):
        return str(tools[-1].get("name", "reply"))
    return "reply"


def _error_body(path: str, status: int, message: str) -> dict[str, Any]:
    if path.startswith("/v1/messages"):
        kind = "rate_limit_error" if status == 429 else "api_error"
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": "fake_error", "param": None, "code": status}}


#: How each dialect answers the ways of asking for structured output (``response_format``
#: json_schema or json_object, ``tools``): ``None`` accepts, else (status, error message).
#: ``llama.cpp`` is llama-cpp-python's server, whose refusal of json_schema is an HTTP 500
#: carrying pydantic's validation error.
LLAMA_CPP_REFUSAL = (
    "1 validation error: {'type': 'literal_error', "
    "'loc': ('body', 'response_format', 'type'), "
    "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
    "'ctx': {'expected': \"'text' or 'json_object'\"}}"
)  # as llama-cpp-python 0.3.36 sends it (HTTP 500), seen in bench/real_model.py
_NO_SCHEMA = (400, "response_format type 'json_schema' is not supported by this server")
_NO_FORMAT = (400, "response_format is not supported by this server")
_NO_TOOLS = (400, "tools are not supported by this server")
DIALECTS: dict[str, dict[str, tuple[int, str] | None]] = {
    "openai": {"json_schema": None, "json_object": None, "tools": None},
    "llama.cpp": {"json_schema": (500, LLAMA_CPP_REFUSAL), "json_object": None, "tools": None},
    "json_object_only": {"json_schema": _NO_SCHEMA, "json_object": None, "tools": _NO_TOOLS},
    "tools_only": {"json_schema": _NO_FORMAT, "json_object": _NO_FORMAT, "tools": None},
    "text_only": {"json_schema": _NO_FORMAT, "json_object": _NO_FORMAT, "tools": _NO_TOOLS},
}


def _refusal(dialect: str, request: RecordedRequest) -> tuple[int, str] | None:
    """Why ``dialect`` refuses ``request`` (status, message), or ``None`` when it accepts."""
    body = request.body
    if urlsplit(request.path).path != "/v1/chat/completions" or not isinstance(body, Mapping):
        return None
    accepts = DIALECTS[dialect]
    form = body.get("response_format")
    if isinstance(form, Mapping) and form.get("type") in ("json_schema", "json_object"):
        refused = accepts[str(form["type"])]
        if refused is not None:
            return refused
    if body.get("tools"):
        return accepts["tools"]
    return None


def _forced_function(body: object) -> str | None:
    """The function a request forces with ``tool_choice``, if any."""
    if not isinstance(body, Mapping):
        return None
    choice = body.get("tool_choice")
    function = choice.get("function") if isinstance(choice, Mapping) else None
    name = function.get("name") if isinstance(function, Mapping) else None
    return name if isinstance(name, str) else None
