"""OpenAIClient through the real openai SDK against the fake server on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from keel.engine.models import Tier
from keel.engine.ports import ConfigError, ProviderError
from keel.providers.base import ProviderSettings
from keel.providers.openai_provider import OpenAIClient
from tests.fakes.model_server import FakeModelServer
from tests.unit.providers.helpers import (
    BUNDLE,
    SECRET,
    fast_settings,
    make_request,
    refused_url,
)


def openai_env(srv: FakeModelServer) -> dict[str, str]:
    return {"OPENAI_API_KEY": SECRET, "OPENAI_BASE_URL": srv.openai_base_url}


@asynccontextmanager
async def client(
    settings: ProviderSettings, provider: str = "openai", model: str = "gpt-4.1"
) -> AsyncIterator[OpenAIClient]:
    c = OpenAIClient(provider, model, settings)
    try:
        yield c
    finally:
        await c.aclose()


async def test_request_carries_keel_headers_and_json_schema(server: FakeModelServer) -> None:
    async with client(fast_settings(openai_env(server))) as c:
        reply = await c.complete(make_request())
    assert json.loads(reply.text) == BUNDLE
    (req,) = server.requests
    assert req.path == "/v1/chat/completions"
    assert req.headers["x-keel-session"] == "sess-1"
    assert req.headers["X-Keel-Tier"] == "actuator"
    assert req.headers["X-Keel-Node"] == "node-2"
    assert req.headers["X-Keel-Attempt"] == "1"
    assert req.headers["Authorization"] == f"Bearer {SECRET}"
    fmt = req.body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "artifact_bundle"
    assert fmt["json_schema"]["schema"]["type"] == "object"
    assert [m["role"] for m in req.body["messages"]] == ["system", "user"]
    assert req.body["model"] == "gpt-4.1"


async def test_no_node_header_without_a_node(server: FakeModelServer) -> None:
    request = make_request(Tier.ARCHITECT, node=None, schema_name="task_plan")
    async with client(fast_settings(openai_env(server))) as c:
        await c.complete(request)
    (req,) = server.requests
    assert "X-Keel-Node" not in req.headers
    assert req.body["response_format"]["json_schema"]["name"] == "task_plan"


async def test_usage_and_cost_of_a_priced_model(server: FakeModelServer) -> None:
    async with client(fast_settings(openai_env(server))) as c:
        reply = await c.complete(make_request())
    assert reply.model == "openai:gpt-4.1"
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (1000, 500)
    assert reply.usage.priced
    assert reply.usage.cost_usd == pytest.approx(1000 * 2.0 / 1e6 + 500 * 8.0 / 1e6)
    assert reply.latency_s > 0


async def test_unknown_model_costs_nothing_and_says_so(server: FakeModelServer) -> None:
    settings = fast_settings({}, openai_compatible_base_url=server.openai_base_url)
    async with client(settings, "openai-compatible", "llama3.2") as c:
        reply = await c.complete(make_request())
    assert reply.usage.input_tokens == 1000
    assert (reply.usage.cost_usd, reply.usage.priced) == (0.0, False)


async def test_compatible_server_needs_no_key(server: FakeModelServer) -> None:
    settings = fast_settings({}, openai_compatible_base_url=server.openai_base_url)
    async with client(settings, "openai-compatible", "llama3.2") as c:
        await c.complete(make_request())
    assert server.requests[0].headers["authorization"] == "Bearer not-needed"


async def test_compatible_base_url_env_overrides_config(server: FakeModelServer) -> None:
    env = {"OPENAI_BASE_URL": server.openai_base_url}
    settings = fast_settings(env, openai_compatible_base_url="http://127.0.0.1:9/v1")
    async with client(settings, "openai-compatible", "qwen") as c:
        assert c.base_url == server.openai_base_url
        await c.complete(make_request())
    assert len(server.requests) == 1


def test_compatible_without_base_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        OpenAIClient("openai-compatible", "llama3.2", ProviderSettings(env={}))
    assert "OPENAI_BASE_URL" in str(err.value)
    assert "base_url" in str(err.value)


def test_missing_key_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^OPENAI_API_KEY is not set: .*replay:"):
        OpenAIClient("openai", "gpt-4.1", ProviderSettings(env={}))


def test_missing_key_names_the_configured_variable() -> None:
    settings = ProviderSettings(env={}, api_key_env={"openai": "WORK_OPENAI_KEY"})
    with pytest.raises(ConfigError, match="WORK_OPENAI_KEY is not set"):
        OpenAIClient("openai", "gpt-4.1", settings)


@pytest.mark.parametrize("status", [500, 429, 503])
async def test_transient_status_is_retried(server: FakeModelServer, status: int) -> None:
    server.fail_next(1, status=status)
    async with client(fast_settings(openai_env(server))) as c:
        reply = await c.complete(make_request())
    assert json.loads(reply.text) == BUNDLE
    assert len(server.requests) == 2


async def test_retries_give_up_with_a_retryable_error(server: FakeModelServer) -> None:
    server.fail_next(3, status=500, message="upstream exploded")
    async with client(fast_settings(openai_env(server), max_retries=2)) as c:
        with pytest.raises(ProviderError) as err:
            await c.complete(make_request())
    assert err.value.retryable
    message = str(err.value)
    assert f"500 from {server.openai_base_url}: upstream exploded" in message
    assert "gave up after 3 attempts" in message
    assert len(server.requests) == 3


async def test_bad_request_is_not_retried_and_hides_the_key(server: FakeModelServer) -> None:
    server.fail_next(1, status=400, message=f"bad schema for key {SECRET}")
    async with client(fast_settings(openai_env(server))) as c:
        with pytest.raises(ProviderError) as err:
            await c.complete(make_request())
    assert not err.value.retryable
    assert "400 from" in str(err.value)
    assert SECRET not in str(err.value)
    assert len(server.requests) == 1


async def test_auth_failure_names_the_variable_never_the_key(server: FakeModelServer) -> None:
    server.fail_next(1, status=401, message=f"Incorrect API key provided: {SECRET}")
    async with client(fast_settings(openai_env(server))) as c:
        with pytest.raises(ProviderError) as err:
            await c.complete(make_request())
    message = str(err.value)
    assert message == f"openai:gpt-4.1: 401 from {server.openai_base_url}: check OPENAI_API_KEY"
    assert not err.value.retryable
    assert SECRET not in message


async def test_hanging_server_times_out_naming_the_url(server: FakeModelServer) -> None:
    server.hang_next(2)
    settings = fast_settings(openai_env(server), timeout_s=0.5, max_retries=1)
    async with client(settings) as c:
        with pytest.raises(ProviderError) as err:
            await c.complete(make_request())
    assert err.value.retryable
    assert server.openai_base_url in str(err.value)
    assert "timed out after 0.5s" in str(err.value)
    assert "gave up after 2 attempts" in str(err.value)
    assert len(server.wait_for_requests(2)) == 2


async def test_connection_refused_names_the_url() -> None:
    url = f"{refused_url()}/v1"
    env = {"OPENAI_API_KEY": SECRET, "OPENAI_BASE_URL": url}
    async with client(fast_settings(env, max_retries=0)) as c:
        with pytest.raises(ProviderError) as err:
            await c.complete(make_request())
    assert str(err.value) == f"openai:gpt-4.1: cannot reach {url} (connection refused)"
    assert err.value.retryable
    assert SECRET not in str(err.value)


async def test_malformed_reply_text_is_returned_raw(server: FakeModelServer) -> None:
    async with client(fast_settings(openai_env(server))) as c:
        reply = await c.complete(make_request(attempt=2))
    assert reply.text == "{not json"


async def test_empty_reply_is_a_final_error(server: FakeModelServer) -> None:
    request = make_request(Tier.VERIFIER, schema_name="verifier_report")
    async with client(fast_settings(openai_env(server))) as c:
        with pytest.raises(ProviderError, match="empty reply") as err:
            await c.complete(request)
    assert not err.value.retryable
    assert len(server.requests) == 1


async def test_unknown_transcript_key_is_a_404(server: FakeModelServer) -> None:
    async with client(fast_settings(openai_env(server))) as c:
        with pytest.raises(ProviderError) as err:
            await c.complete(make_request(node="node-9"))
    assert "404 from" in str(err.value)
    assert "actuator node-9 attempt 1" in str(err.value)
    assert not err.value.retryable


async def test_a_reply_trickled_a_byte_at_a_time_meets_one_deadline(
    server: FakeModelServer,
) -> None:
    server.trickle_next(2, interval_s=0.05)  # each read gets a byte; the reply takes ~40 s
    settings = fast_settings(openai_env(server), timeout_s=0.5, max_retries=1)
    async with client(settings) as c:
        with pytest.raises(ProviderError) as err:
            await c.complete(make_request())
    assert err.value.retryable
    assert server.openai_base_url in str(err.value)
    assert "timed out after 0.5s" in str(err.value)
    assert "gave up after 2 attempts" in str(err.value)
    assert len(server.wait_for_requests(2)) == 2


async def test_after_a_trickled_reply_times_out_the_retry_is_answered(
    server: FakeModelServer,
) -> None:
    server.trickle_next(1, interval_s=0.05)
    settings = fast_settings(openai_env(server), timeout_s=0.5, max_retries=1)
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
    async with client(fast_settings(openai_env(server))) as c:
        with pytest.raises(ProviderError) as err:
            await c.complete(request)
    assert problem in str(err.value)
    assert server.openai_base_url in str(err.value)
    assert not err.value.retryable
    assert len(server.requests) == 1
    charged = err.value.charged
    assert charged is not None and charged.priced
    sent = len(request.system) + len(request.prompt) + len(json.dumps(request.schema))
    assert charged.input_tokens >= sent  # one token per byte: an upper bound
    assert charged.output_tokens >= 1000
    assert charged.cost_usd > 0


async def test_an_openai_compatible_server_trickling_meets_the_same_deadline(
    server: FakeModelServer,
) -> None:
    server.trickle_next(1, interval_s=0.05)
    settings = fast_settings(
        {}, openai_compatible_base_url=server.openai_base_url, timeout_s=0.5, max_retries=0
    )
    async with client(settings, "openai-compatible", "llama3.2") as c:
        with pytest.raises(ProviderError, match=r"timed out after 0\.5s") as err:
            await c.complete(make_request())
    assert err.value.retryable and server.openai_base_url in str(err.value)
