"""AnthropicClient through the real anthropic SDK against the fake server on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from keel.engine.models import Tier
from keel.engine.ports import ConfigError, ProviderError
from keel.providers.anthropic_provider import AnthropicClient
from keel.providers.base import ProviderSettings
from tests.fakes.model_server import FakeModelServer
from tests.unit.providers.helpers import (
    BUNDLE,
    PLAN,
    SECRET,
    fast_settings,
    make_request,
    refused_url,
)


def anthropic_env(srv: FakeModelServer) -> dict[str, str]:
    return {"ANTHROPIC_API_KEY": SECRET, "ANTHROPIC_BASE_URL": srv.anthropic_base_url}


@asynccontextmanager
async def client(
    settings: ProviderSettings, model: str = "claude-haiku-4-5"
) -> AsyncIterator[AnthropicClient]:
    c = AnthropicClient(model, settings)
    try:
        yield c
    finally:
        await c.aclose()


async def test_request_forces_the_schema_tool_and_sends_headers(
    server: FakeModelServer,
) -> None:
    async with client(fast_settings(anthropic_env(server))) as c:
        reply = await c.complete(make_request())
    assert json.loads(reply.text) == BUNDLE
    (req,) = server.requests
    assert req.path == "/v1/messages"
    assert req.headers["X-Keel-Session"] == "sess-1"
    assert req.headers["X-Keel-Tier"] == "actuator"
    assert req.headers["X-Keel-Node"] == "node-2"
    assert req.headers["X-Keel-Attempt"] == "1"
    # This SDK version sends the key as a bearer token; older ones used x-api-key.
    assert SECRET in (req.headers.get("x-api-key") or req.headers["authorization"])
    assert req.body["tool_choice"] == {"type": "tool", "name": "artifact_bundle"}
    (tool,) = req.body["tools"]
    assert tool["name"] == "artifact_bundle"
    assert tool["input_schema"]["type"] == "object"
    assert req.body["system"] == "You are the actuator."
    assert req.body["messages"] == [{"role": "user", "content": "Write the calculator."}]
    assert req.body["max_tokens"] == 8192


async def test_usage_and_cost_of_a_priced_model(server: FakeModelServer) -> None:
    async with client(fast_settings(anthropic_env(server))) as c:
        reply = await c.complete(make_request())
    assert reply.model == "anthropic:claude-haiku-4-5"
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (1000, 500)
    assert reply.usage.priced
    assert reply.usage.cost_usd == pytest.approx(1000 * 1.0 / 1e6 + 500 * 5.0 / 1e6)


async def test_unknown_model_costs_nothing_and_says_so(server: FakeModelServer) -> None:
    async with client(fast_settings(anthropic_env(server)), model="claude-next-9") as c:
        reply = await c.complete(make_request())
    assert (reply.usage.cost_usd, reply.usage.priced) == (0.0, False)


async def test_plan_request_without_a_node(server: FakeModelServer) -> None:
    request = make_request(Tier.ARCHITECT, node=None, schema_name="task_plan")
    async with client(fast_settings(anthropic_env(server))) as c:
        reply = await c.complete(request)
    assert json.loads(reply.text) == PLAN
    assert "X-Keel-Node" not in server.requests[0].headers


async def test_text_instead_of_a_tool_call_is_a_final_error(server: FakeModelServer) -> None:
    async with client(fast_settings(anthropic_env(server))) as c:
        with pytest.raises(ProviderError, match="no artifact_bundle tool call") as err:
            await c.complete(make_request(attempt=2))
    assert not err.value.retryable
    assert len(server.requests) == 1


async def test_a_body_that_is_not_a_message_is_a_final_error(server: FakeModelServer) -> None:
    server.fail_next(1, status=200)  # an error body with a 200 status, as a broken proxy sends
    async with client(fast_settings(anthropic_env(server))) as c:
        with pytest.raises(ProviderError, match="is not a Messages API reply") as err:
            await c.complete(make_request())
    assert not err.value.retryable


@pytest.mark.parametrize("status", [500, 429, 529])
async def test_transient_status_is_retried(server: FakeModelServer, status: int) -> None:
    server.fail_next(1, status=status)
    async with client(fast_settings(anthropic_env(server))) as c:
        reply = await c.complete(make_request())
    assert json.loads(reply.text) == BUNDLE
    assert len(server.requests) == 2


async def test_auth_failure_names_the_variable_never_the_key(server: FakeModelServer) -> None:
    server.fail_next(1, status=401, message=f"invalid x-api-key {SECRET}")
    async with client(fast_settings(anthropic_env(server))) as c:
        with pytest.raises(ProviderError) as err:
            await c.complete(make_request())
    assert str(err.value) == (
        f"anthropic:claude-haiku-4-5: 401 from {server.anthropic_base_url}: check ANTHROPIC_API_KEY"
    )
    assert not err.value.retryable


async def test_server_message_is_shown_without_the_key(server: FakeModelServer) -> None:
    server.fail_next(1, status=400, message=f"tools.0: bad schema ({SECRET})")
    async with client(fast_settings(anthropic_env(server))) as c:
        with pytest.raises(ProviderError) as err:
            await c.complete(make_request())
    assert "400 from" in str(err.value)
    assert "tools.0: bad schema" in str(err.value)
    assert SECRET not in str(err.value)


async def test_hanging_server_times_out_naming_the_url(server: FakeModelServer) -> None:
    server.hang_next(1)
    settings = fast_settings(anthropic_env(server), timeout_s=0.3, max_retries=0)
    async with client(settings) as c:
        with pytest.raises(ProviderError) as err:
            await c.complete(make_request())
    assert err.value.retryable
    assert server.anthropic_base_url in str(err.value)


async def test_connection_refused_names_the_url() -> None:
    url = refused_url()
    env = {"ANTHROPIC_API_KEY": SECRET, "ANTHROPIC_BASE_URL": url}
    async with client(fast_settings(env, max_retries=1)) as c:
        with pytest.raises(ProviderError) as err:
            await c.complete(make_request())
    assert f"cannot reach {url} (connection refused)" in str(err.value)
    assert "gave up after 2 attempts" in str(err.value)
    assert SECRET not in str(err.value)


def test_missing_key_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^ANTHROPIC_API_KEY is not set: .*replay:"):
        AnthropicClient("claude-sonnet-4-5", ProviderSettings(env={}))


async def test_a_reply_trickled_a_byte_at_a_time_meets_one_deadline(
    server: FakeModelServer,
) -> None:
    server.trickle_next(2, interval_s=0.05)  # each read gets a byte; the reply takes ~40 s
    settings = fast_settings(anthropic_env(server), timeout_s=0.5, max_retries=1)
    async with client(settings) as c:
        with pytest.raises(ProviderError) as err:
            await c.complete(make_request())
    assert err.value.retryable
    assert server.anthropic_base_url in str(err.value)
    assert "timed out after 0.5s" in str(err.value)
    assert "gave up after 2 attempts" in str(err.value)
    assert len(server.wait_for_requests(2)) == 2


async def test_after_a_trickled_reply_times_out_the_retry_is_answered(
    server: FakeModelServer,
) -> None:
    server.trickle_next(1, interval_s=0.05)
    settings = fast_settings(anthropic_env(server), timeout_s=0.5, max_retries=1)
    async with client(settings) as c:
        reply = await c.complete(make_request())
    assert json.loads(reply.text) == BUNDLE
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("tokens_in", "tokens_out", "problem"),
    [
        (-5, 10, "a negative input token count (-5)"),
        (10, -1, "a negative output token count (-1)"),
        (1.5, 10, "a non-integer input token count (1.5)"),
        (10, "many", "a non-integer output token count ('many')"),
        (10, None, "a non-integer output token count (None)"),
        (10**12, 10, "an absurd input token count (1000000000000 > 10000000)"),
    ],
)
async def test_unbelievable_usage_is_a_final_error_charged_conservatively(
    server: FakeModelServer, tokens_in: object, tokens_out: object, problem: str
) -> None:
    server.usage_next(tokens_in, tokens_out)
    request = make_request()
    async with client(fast_settings(anthropic_env(server))) as c:
        with pytest.raises(ProviderError) as err:
            await c.complete(request)
    assert problem in str(err.value)
    assert server.anthropic_base_url in str(err.value)
    assert not err.value.retryable
    assert len(server.requests) == 1
    charged = err.value.charged
    assert charged is not None and charged.priced
    sent = len(request.system) + len(request.prompt) + len(json.dumps(request.schema))
    assert charged.input_tokens >= sent  # one token per byte: an upper bound
    assert charged.output_tokens >= 1000
    assert charged.cost_usd > 0
