"""Structured-output negotiation through the real openai SDK against fake servers that refuse
the way real OpenAI-compatible servers do: each refusal moves one mode down the ladder
(json_schema, json_object, tools, prompt) at once, no request is sent twice in a mode, the mode
that works is used from then on and remembered, and every request carries max_tokens."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest

from keel.engine.ports import ConfigError, KeelError, ModelRequest, ProviderError, ToolSpec
from keel.providers.base import ProviderSettings
from keel.providers.openai_provider import OpenAIClient
from tests.fakes.model_server import FakeModelServer, RecordedRequest
from tests.unit.providers.helpers import BUNDLE, ENTRIES, SECRET, fast_settings, make_request


class Memory:
    """An in-memory :class:`~keel.engine.ports.StructuredModeMemory` (the store's stand-in)."""

    def __init__(self, modes: dict[tuple[str, str], str] | None = None, broken: bool = False):
        self.modes = dict(modes or {})
        self.broken = broken
        self.writes: list[tuple[str, str, str]] = []

    async def structured_mode(self, endpoint: str, model: str) -> str | None:
        if self.broken:
            raise KeelError("the store is locked")
        return self.modes.get((endpoint, model))

    async def remember_structured_mode(self, endpoint: str, model: str, mode: str) -> None:
        if self.broken:
            raise KeelError("the store is locked")
        self.writes.append((endpoint, model, mode))
        self.modes[(endpoint, model)] = mode


def mode_of(request: RecordedRequest) -> str:
    body = request.body
    form = body.get("response_format")
    if isinstance(form, dict):
        return str(form["type"])
    if isinstance(body.get("tool_choice"), dict):
        return "tools"
    return "prompt"


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[FakeModelServer] = []

    def start(dialect: str) -> FakeModelServer:
        server = FakeModelServer(ENTRIES, dialect=dialect).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@asynccontextmanager
async def compatible(
    server: FakeModelServer, memory: Memory | None = None, **settings: Any
) -> AsyncIterator[OpenAIClient]:
    env = {"OPENAI_BASE_URL": server.openai_base_url}
    c = OpenAIClient("openai-compatible", "local", fast_settings(env, **settings))
    if memory is not None:
        c.use_memory(memory)
    try:
        yield c
    finally:
        await c.aclose()


def bounded(max_tokens: int = 512) -> ModelRequest:
    return replace(make_request(), max_tokens=max_tokens)


@pytest.mark.parametrize(
    ("dialect", "expected", "modes"),
    [
        ("openai", "json_schema", ["json_schema"]),
        ("llama.cpp", "json_object", ["json_schema", "json_object"]),
        ("json_object_only", "json_object", ["json_schema", "json_object"]),
        ("tools_only", "tools", ["json_schema", "json_object", "tools"]),
        ("text_only", "prompt", ["json_schema", "json_object", "tools", "prompt"]),
    ],
)
async def test_each_refusal_moves_one_mode_down_and_the_working_one_is_kept(
    serve: Any, dialect: str, expected: str, modes: list[str]
) -> None:
    server = serve(dialect)
    memory = Memory()
    async with compatible(server, memory) as c:
        first = await c.complete(bounded())
        second = await c.complete(bounded())
        assert c.structured_mode == expected
    assert json.loads(first.text) == json.loads(second.text) == BUNDLE
    sent = [mode_of(r) for r in server.requests]
    assert sent == [*modes, expected]  # each refused mode once; the second call goes straight
    assert all(r.body["max_tokens"] == 512 for r in server.requests)
    url = server.openai_base_url
    assert memory.writes == ([] if expected == "json_schema" else [(url, "local", expected)])


async def test_a_remembered_mode_is_used_from_the_first_request(serve: Any) -> None:
    server = serve("tools_only")
    memory = Memory({(server.openai_base_url, "local"): "tools"})
    async with compatible(server, memory) as c:
        reply = await c.complete(bounded())
    assert json.loads(reply.text) == BUNDLE
    assert [mode_of(r) for r in server.requests] == ["tools"]


async def test_a_nonsense_remembered_mode_is_ignored(serve: Any) -> None:
    server = serve("openai")
    memory = Memory({(server.openai_base_url, "local"): "telepathy"})
    async with compatible(server, memory) as c:
        await c.complete(bounded())
    assert [mode_of(r) for r in server.requests] == ["json_schema"]


async def test_a_broken_memory_only_costs_the_negotiation(serve: Any) -> None:
    server = serve("llama.cpp")
    async with compatible(server, Memory(broken=True)) as c:
        reply = await c.complete(bounded())
    assert json.loads(reply.text) == BUNDLE
    assert [mode_of(r) for r in server.requests] == ["json_schema", "json_object"]


async def test_tools_mode_forces_the_answer_tool_and_reads_its_arguments(serve: Any) -> None:
    server = serve("tools_only")
    async with compatible(server, structured="tools") as c:
        reply = await c.complete(bounded())
    assert json.loads(reply.text) == BUNDLE and not reply.tool_calls
    (request,) = server.requests
    assert "response_format" not in request.body
    assert request.body["tool_choice"] == {
        "type": "function",
        "function": {"name": "artifact_bundle"},
    }
    [answer] = request.body["tools"]
    assert answer["function"]["parameters"] == dict(make_request().schema)


async def test_prompt_mode_puts_the_schema_in_the_system_prompt(serve: Any) -> None:
    server = serve("text_only")
    async with compatible(server, structured="prompt") as c:
        reply = await c.complete(bounded())
    assert json.loads(reply.text) == BUNDLE
    (request,) = server.requests
    assert "response_format" not in request.body and "tools" not in request.body
    system = request.body["messages"][0]["content"]
    assert system.startswith("You are the actuator.")
    assert json.dumps(dict(make_request().schema), separators=(",", ":")) in system


async def test_a_fixed_mode_that_is_refused_fails_once_and_names_the_fix(serve: Any) -> None:
    """A refusal is a 500 from llama.cpp, which would otherwise be retried: it is not."""
    server = serve("llama.cpp")
    async with compatible(server, structured="json_schema") as c:
        with pytest.raises(ProviderError) as caught:
            await c.complete(bounded())
    assert len(server.requests) == 1
    assert not caught.value.retryable
    assert 'structured = "auto"' in str(caught.value)
    assert "Input should be 'text' or 'json_object'" in str(caught.value)


async def test_nothing_left_to_try_fails_once(serve: Any) -> None:
    server = serve("text_only")
    server.fail_next(1, 400, "tools are not supported")  # even prompt mode is refused
    async with compatible(server, structured="prompt") as c:
        with pytest.raises(ProviderError) as caught:
            await c.complete(bounded())
    assert len(server.requests) == 1 and not caught.value.retryable


async def test_a_server_error_that_is_no_refusal_is_retried_in_the_same_mode(
    serve: Any,
) -> None:
    server = serve("openai")
    server.fail_next(1, 500, "CUDA out of memory")
    async with compatible(server) as c:
        reply = await c.complete(bounded())
    assert json.loads(reply.text) == BUNDLE
    assert [mode_of(r) for r in server.requests] == ["json_schema", "json_schema"]
    assert c.structured_mode == "json_schema"


async def test_a_context_length_error_does_not_change_the_mode(serve: Any) -> None:
    server = serve("openai")
    server.fail_next(1, 400, "This model's maximum context length is 8192 tokens")
    async with compatible(server) as c:
        with pytest.raises(ProviderError, match="maximum context length"):
            await c.complete(bounded())
    assert [mode_of(r) for r in server.requests] == ["json_schema"]
    assert c.structured_mode == "json_schema"


async def test_openai_itself_never_negotiates_and_gets_max_completion_tokens(
    serve: Any,
) -> None:
    server = serve("openai")
    env = {"OPENAI_API_KEY": SECRET, "OPENAI_BASE_URL": server.openai_base_url}
    c = OpenAIClient("openai", "gpt-4.1", fast_settings(env, structured="prompt"))
    try:
        await c.complete(bounded(300))
    finally:
        await c.aclose()
    (request,) = server.requests
    assert mode_of(request) == "json_schema"
    assert request.body["max_completion_tokens"] == 300 and "max_tokens" not in request.body


async def test_no_limit_is_sent_when_none_is_set(serve: Any) -> None:
    server = serve("openai")
    async with compatible(server) as c:
        await c.complete(make_request())
    (request,) = server.requests
    assert "max_tokens" not in request.body and "max_completion_tokens" not in request.body


async def test_a_reply_cut_at_max_tokens_is_marked_truncated(serve: Any) -> None:
    server = serve("openai")
    server.truncate_next()
    async with compatible(server) as c:
        reply = await c.complete(bounded())
    assert reply.truncated
    with pytest.raises(ValueError):
        json.loads(reply.text)


def test_an_unknown_mode_is_a_config_error() -> None:
    settings = ProviderSettings(env={"OPENAI_BASE_URL": "http://127.0.0.1:1/v1"}, structured="x")
    with pytest.raises(ConfigError, match="structured = 'x'"):
        OpenAIClient("openai-compatible", "local", settings)


async def test_a_server_refusing_only_the_exploration_tools_keeps_its_mode(serve: Any) -> None:
    server = serve("json_object_only")
    tool = ToolSpec("open_file", "Open a file", {"type": "object", "properties": {}})
    exploring = replace(bounded(), tools=(tool,))
    async with compatible(server) as c:
        first = await c.complete(exploring)
        await c.complete(exploring)
        assert c.structured_mode == "json_object"
    assert json.loads(first.text) == BUNDLE
    sent = [(mode_of(r), bool(r.body.get("tools"))) for r in server.requests]
    assert sent == [
        ("json_schema", True),
        ("json_object", True),
        ("json_object", False),  # same mode, without the tools the server refused
        ("json_object", False),  # and so from then on
    ]


async def test_tools_mode_passes_broken_answer_arguments_on_for_validation(serve: Any) -> None:
    """The answer tool called with arguments that are not JSON: the raw text is the reply,
    so the engine's validation names the problem and the model gets another attempt."""
    server = serve("tools_only")
    async with compatible(server, structured="tools") as c:
        reply = await c.complete(replace(bounded(), attempt=2))
    assert reply.text == "{not json" and not reply.tool_calls


async def test_tools_mode_takes_a_plain_answer_when_the_model_ignores_the_tool(
    serve: Any,
) -> None:
    server = serve("openai")  # honours tools, but this reply comes back as content
    async with compatible(server, structured="tools") as c:
        tool = ToolSpec("open_file", "Open a file", {"type": "object", "properties": {}})
        reply = await c.complete(replace(bounded(), tools=(tool,)))
    assert json.loads(reply.text) == BUNDLE and not reply.tool_calls
    (request,) = server.requests
    assert request.body["tool_choice"] == "auto"  # exploring: the model may call open_file
    assert [t["function"]["name"] for t in request.body["tools"]] == [
        "open_file",
        "artifact_bundle",
    ]
