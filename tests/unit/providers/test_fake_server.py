"""The fake model server itself: routing, recording, fault injection, clean shutdown."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.fakes.model_server import FakeModelServer
from tests.unit.providers.helpers import BUNDLE, ENTRIES

HEADERS = {"X-Keel-Tier": "actuator", "X-Keel-Node": "node-2", "X-Keel-Attempt": "1"}


def post(url: str, body: dict[str, Any], timeout: float = 5.0) -> tuple[int, Any]:
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={**HEADERS, "Content-Type": "a/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_openai_shape_and_recording(server: FakeModelServer) -> None:
    status, body = post(f"{server.openai_base_url}/chat/completions", {"model": "m"})
    assert status == 200
    assert json.loads(body["choices"][0]["message"]["content"]) == BUNDLE
    assert body["usage"]["total_tokens"] == 1500
    (req,) = server.requests
    assert (req.method, req.path, req.body) == ("POST", "/v1/chat/completions", {"model": "m"})
    assert req.headers["x-keel-node"] == "node-2"


def test_anthropic_shape_names_the_forced_tool(server: FakeModelServer) -> None:
    request = {"model": "c", "tool_choice": {"type": "tool", "name": "artifact_bundle"}}
    status, body = post(f"{server.anthropic_base_url}/v1/messages", request)
    assert status == 200
    (block,) = body["content"]
    assert (block["type"], block["name"], block["input"]) == ("tool_use", "artifact_bundle", BUNDLE)
    assert body["stop_reason"] == "tool_use"


def test_failures_are_injected_in_order(server: FakeModelServer) -> None:
    server.fail_next(1, status=503, message="down")
    url = f"{server.openai_base_url}/chat/completions"
    assert post(url, {}) == (503, {"error": {"message": "down", "type": "fake_error",
                                             "param": None, "code": 503}})  # fmt: skip
    assert post(url, {})[0] == 200


def test_hanging_requests_are_released_on_close() -> None:
    srv = FakeModelServer(ENTRIES).start()
    srv.hang_next(1)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            post(f"{srv.openai_base_url}/chat/completions", {}, timeout=10)
        except Exception as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    srv.wait_for_requests(1)
    start = time.monotonic()
    srv.close()
    caller.join(timeout=5)
    assert not caller.is_alive()
    assert outcome, "the hanging request must end without an answer"
    assert time.monotonic() - start < 2


def test_wait_for_requests_times_out(server: FakeModelServer) -> None:
    with pytest.raises(TimeoutError, match="saw 0 of 1 requests"):
        server.wait_for_requests(1, timeout=0.05)


def test_latency_is_added(server: FakeModelServer) -> None:
    server.latency_s = 0.2
    start = time.monotonic()
    post(f"{server.openai_base_url}/chat/completions", {})
    assert time.monotonic() - start >= 0.2


def test_hang_on_holds_only_the_matching_request() -> None:
    srv = FakeModelServer(ENTRIES).start()
    srv.hang_on("actuator", "node-2", 1)
    url = f"{srv.openai_base_url}/chat/completions"
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            post(url, {}, timeout=10)
        except Exception as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    srv.wait_for_requests(1)
    assert post(url, {})[0] == 200  # one-shot: the same key is answered next time
    assert caller.is_alive()  # the first one is still held
    srv.close()
    caller.join(timeout=5)
    assert outcome and not caller.is_alive()


def test_hang_on_answers_other_requests(server: FakeModelServer) -> None:
    server.hang_on("actuator", "node-9", 1)  # never requested: others are answered
    assert post(f"{server.openai_base_url}/chat/completions", {})[0] == 200
