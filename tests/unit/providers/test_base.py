"""The shared pieces: backoff, the retry loop, error mapping and the price table."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from keel.engine.ports import ModelRequest, ProviderError
from keel.providers.base import (
    CHARS_PER_TOKEN,
    ESTIMATED_REPLY_TOKENS,
    Endpoint,
    ProviderSettings,
    RawReply,
    RetryingClient,
    SdkErrorTypes,
    backoff_delay,
    redact,
    translate_error,
    with_retries,
)
from keel.providers.prices import lookup, price
from tests.unit.providers.helpers import make_request

SETTINGS = ProviderSettings(env={}, max_retries=3, retry_base_delay_s=0.5, retry_max_delay_s=3.0)


def test_backoff_doubles_adds_jitter_and_is_capped() -> None:
    assert [backoff_delay(i, SETTINGS, lambda: 0.0) for i in range(4)] == [0.5, 1.0, 2.0, 3.0]
    assert backoff_delay(0, SETTINGS, lambda: 1.0) == pytest.approx(1.0)
    assert backoff_delay(10, SETTINGS, lambda: 1.0) == 3.0


class Flaky:
    """Fails ``failures`` times with ``error``, then answers."""

    def __init__(self, failures: int, error: ProviderError) -> None:
        self.calls = 0
        self.failures = failures
        self.error = error

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


async def no_sleep(delays: list[float], seconds: float) -> None:
    delays.append(seconds)


async def test_retryable_errors_are_retried_with_backoff() -> None:
    flaky = Flaky(2, ProviderError("boom", retryable=True))
    delays: list[float] = []
    result = await with_retries(
        flaky, SETTINGS, sleep=lambda s: no_sleep(delays, s), rand=lambda: 0.0
    )
    assert result == "ok"
    assert flaky.calls == 3
    assert delays == [0.5, 1.0]


async def test_final_error_says_how_many_attempts() -> None:
    flaky = Flaky(10, ProviderError("boom", retryable=True))
    delays: list[float] = []
    with pytest.raises(ProviderError, match=r"^boom \(gave up after 4 attempts\)$") as err:
        await with_retries(flaky, SETTINGS, sleep=lambda s: no_sleep(delays, s))
    assert err.value.retryable
    assert flaky.calls == 4
    assert len(delays) == 3


async def test_non_retryable_errors_are_raised_at_once() -> None:
    error = ProviderError("bad request", retryable=False)
    flaky = Flaky(1, error)
    delays: list[float] = []
    with pytest.raises(ProviderError) as err:
        await with_retries(flaky, SETTINGS, sleep=lambda s: no_sleep(delays, s))
    assert err.value is error
    assert (flaky.calls, delays) == (1, [])


class FakeStatusError(Exception):
    def __init__(self, status_code: int, body: object) -> None:
        super().__init__(f"Error code: {status_code}")
        self.status_code = status_code
        self.body = body


class FakeTimeout(Exception):
    pass


class FakeConnection(Exception):
    pass


SDK = SdkErrorTypes(status=FakeStatusError, timeout=FakeTimeout, connection=FakeConnection)
ENDPOINT = Endpoint(label="m", url="https://x/v1", key_env="K", secrets=("sekrit",))


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(400, False), (401, False), (403, False), (404, False), (408, True), (429, True),
     (500, True), (502, True), (503, True), (529, True)],
)  # fmt: skip
def test_status_codes_map_to_retryable(status: int, retryable: bool) -> None:
    error = translate_error(FakeStatusError(status, {"message": "why"}), SDK, ENDPOINT)
    assert error.retryable is retryable
    assert str(error).startswith(f"m: {status} from https://x/v1")


def test_connection_errors_read_the_cause_chain() -> None:
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as inner:
            raise FakeConnection("Connection error.") from inner
    except FakeConnection as exc:
        error = translate_error(exc, SDK, ENDPOINT)
    assert str(error) == "m: cannot reach https://x/v1 (connection refused)"
    assert error.retryable


def test_messages_are_one_line_and_never_hold_the_secret() -> None:
    body = {"error": {"message": "bad\n  thing sekrit\n" + "x" * 500}}
    error = translate_error(FakeStatusError(422, body), SDK, ENDPOINT)
    assert "\n" not in str(error)
    assert "sekrit" not in str(error)
    assert len(str(error)) < 300
    assert redact("a sekrit b", ("sekrit", "")) == "a *** b"


def test_prices_know_snapshots_prefixes_and_overrides() -> None:
    assert lookup("gpt-4.1") == (2.0, 8.0)
    assert lookup("openai:gpt-4.1-2025-04-14") == (2.0, 8.0)
    assert lookup("anthropic:claude-sonnet-4-5-20250929") == (3.0, 15.0)
    assert lookup("gpt-4.1-mini") == (0.4, 1.6)
    assert lookup("llama3") is None
    assert lookup("llama3", {"llama3": (0.1, 0.2)}) == (0.1, 0.2)
    overrides = {"gpt-4.1": (1.0, 1.0), "openai:gpt-4.1": (9.0, 9.0)}
    assert lookup("openai:gpt-4.1", overrides) == (9.0, 9.0)


def test_price_of_a_call() -> None:
    usage = price("openai:gpt-4o-mini", 1_000_000, 1_000_000)
    assert usage.cost_usd == pytest.approx(0.75)
    assert usage.priced
    unknown = price("openai-compatible:mystery", 10, 20)
    assert (unknown.input_tokens, unknown.output_tokens) == (10, 20)
    assert (unknown.cost_usd, unknown.priced) == (0.0, False)


def test_a_priced_model_estimates_from_the_characters_sent_and_a_typical_reply() -> None:
    """Before any call, ``--max-cost`` needs a figure: chars/4 input tokens plus 1000 output
    tokens, at the model's price; an unpriced model estimates 0 (and is allowed)."""
    request = make_request()
    sent = len(request.system) + len(request.prompt) + len(json.dumps(request.schema))
    input_tokens = math.ceil(sent / CHARS_PER_TOKEN)
    settings = ProviderSettings(env={})
    priced = _Named("openai:gpt-4.1", settings)
    expected = (input_tokens * 2.00 + ESTIMATED_REPLY_TOKENS * 8.00) / 1e6
    assert priced.estimate_cost(request) == pytest.approx(expected)
    longer = replace(request, prompt=request.prompt * 100)
    assert priced.estimate_cost(longer) > priced.estimate_cost(request)
    assert _Named("openai-compatible:llama-local", settings).estimate_cost(request) == 0.0
    overridden = ProviderSettings(env={}, prices={"llama-local": (1.0, 1.0)})
    assert _Named("openai-compatible:llama-local", overridden).estimate_cost(request) > 0


class _Named(RetryingClient):
    async def _attempt(self, request: ModelRequest) -> RawReply:
        raise AssertionError("an estimate sends nothing")
