"""What every model client shares: settings, one retry loop, one clock, one error mapping.

The SDK clients are created with ``max_retries=0`` and retried here instead, so that retries
are logged, configurable and identical for every provider, and so that latency is measured
the same way everywhere (wall time of the whole call, retries included). SDK exceptions are
mapped onto :class:`ProviderError` in one place so that users see one clear line per failure
(with the URL that failed) and never an API key. This module never imports an SDK: each
provider passes its own exception classes in :class:`SdkErrorTypes`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from keel.engine import defaults
from keel.engine.models import Usage
from keel.engine.ports import ConfigError, ModelReply, ModelRequest, ProviderError, ToolCall
from keel.providers.prices import price

_log = logging.getLogger("keel.providers")

T = TypeVar("T")

#: The environment variable that holds each provider's API key, unless configured otherwise.
DEFAULT_API_KEY_ENV: Mapping[str, str] = {
    "openai": "OPENAI_API_KEY",
    "openai-compatible": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
}

_MAX_DETAIL = 200

#: The cost estimate of a call not yet made: one token per this many characters sent...
CHARS_PER_TOKEN = 4
#: ...and this many tokens in the reply (a typical structured reply; real ones vary).
ESTIMATED_REPLY_TOKENS = 1000
#: A reply reporting more tokens than this, in or out, for one call is not believed: no
#: model's context window comes near it (docs/reference/configuration.md, ``[network]``).
MAX_TOKENS_PER_CALL = 10_000_000


@dataclass(frozen=True)
class ProviderSettings:
    """How providers reach their models; built by the app from config, flags and environment.

    ``env`` is the environment that API keys and base URLs are read from (the process
    environment by default), so that tests pass a dict instead of mutating ``os.environ``.
    ``prices`` overrides the price table: model name (``gpt-4.1`` or ``openai:gpt-4.1``) to
    USD per million input and output tokens.
    """

    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    openai_compatible_base_url: str | None = None
    api_key_env: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_API_KEY_ENV))
    timeout_s: float = defaults.NETWORK_TIMEOUT_S
    max_retries: int = defaults.MAX_RETRIES
    retry_base_delay_s: float = defaults.RETRY_BASE_DELAY_S
    retry_max_delay_s: float = 8.0
    prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    #: ``[providers.openai-compatible] structured``: how structured replies are asked for.
    structured: str = "auto"

    def key_env(self, provider: str) -> str:
        """The name of the variable holding ``provider``'s API key."""
        return self.api_key_env.get(provider) or DEFAULT_API_KEY_ENV[provider]

    def api_key(self, provider: str) -> str | None:
        """``provider``'s API key from :attr:`env`, or ``None`` when unset or empty."""
        return self.env.get(self.key_env(provider)) or None

    def require_api_key(self, provider: str) -> str:
        """The API key, or a :class:`ConfigError` that names the variable to set."""
        key = self.api_key(provider)
        if key is None:
            var = self.key_env(provider)
            raise ConfigError(
                f"{var} is not set: export it, or use --model replay:<transcript> to run offline"
            )
        return key


@dataclass(frozen=True)
class RawReply:
    """One successful answer before pricing and timing.

    ``model`` is the ``PROVIDER:MODEL`` name reported in :class:`ModelReply` and looked up in
    the price table. The token counts are typed ``int`` but come from a server as they are:
    ``complete`` checks them with :func:`usage_problem` before pricing.
    """

    text: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    tool_calls: tuple[ToolCall, ...] = ()
    truncated: bool = False


class RetryingClient(ABC):
    """A :class:`~keel.engine.ports.ModelClient` whose ``complete`` retries, times and prices.

    Subclasses implement one try in :meth:`_attempt`, raising :class:`ProviderError` with
    ``retryable`` set; everything else happens here, once.
    """

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        self._name = name
        self._settings = settings

    @property
    def name(self) -> str:
        return self._name

    async def complete(self, request: ModelRequest) -> ModelReply:
        start = time.monotonic()
        raw = await with_retries(lambda: self._within_deadline(request), self._settings)
        latency = time.monotonic() - start
        problem = usage_problem(raw.input_tokens, raw.output_tokens)
        if problem is not None:
            raise ProviderError(
                f"{self.name}: the reply from {self._where()} reports {problem}; "
                "not believed (the call is charged as if it used one token per byte)",
                charged=self.conservative_usage(request, raw.text),
            )
        usage = price(raw.model, raw.input_tokens, raw.output_tokens, self._settings.prices)
        return ModelReply(
            text=raw.text,
            model=raw.model,
            usage=usage,
            latency_s=latency,
            tool_calls=raw.tool_calls,
            truncated=raw.truncated,
        )

    async def _within_deadline(self, request: ModelRequest) -> RawReply:
        """One try, bounded as a whole: connecting, the headers and the last byte of the body.

        The SDKs' own timeout bounds each read separately, so a server trickling one byte
        at a time would never trip it; this deadline does. Timing out is retryable like any
        other timeout, so a request takes at most ``(max_retries + 1) * timeout_s`` plus the
        backoff between tries.
        """
        timeout_s = self._settings.timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                return await self._attempt(request)
        except TimeoutError:
            message = f"{self.name}: no reply from {self._where()} (timed out after {timeout_s:g}s)"
            raise ProviderError(message, retryable=True) from None

    def conservative_usage(self, request: ModelRequest, reply_text: str) -> Usage:
        """What a call whose reported usage is not believed is charged: an upper bound.

        A token covers at least one byte, so the request's and the reply's UTF-8 sizes bound
        the tokens actually used, whatever the reply claimed.
        """
        sent = request.system + request.prompt + json.dumps(request.schema)
        in_tok = len(sent.encode("utf-8"))
        out_tok = max(len(reply_text.encode("utf-8")), ESTIMATED_REPLY_TOKENS)
        return price(self._name, in_tok, out_tok, self._settings.prices)

    def _where(self) -> str:
        """Where requests go, for error messages (the SDK clients name their base URL)."""
        return self._name

    def estimate_cost(self, request: ModelRequest) -> float:
        """USD the request would likely cost at this model's price (0 when unpriced).

        Input tokens are the characters sent (system, prompt and schema) over
        :data:`CHARS_PER_TOKEN`; output tokens :data:`ESTIMATED_REPLY_TOKENS`. It only has to
        be of the right size: the budget check uses it until a real call was made.
        """
        sent = len(request.system) + len(request.prompt) + len(json.dumps(request.schema))
        sent += sum(len(result) for turn in request.turns for result in turn.results)
        input_tokens = math.ceil(sent / CHARS_PER_TOKEN)
        usage = price(self._name, input_tokens, ESTIMATED_REPLY_TOKENS, self._settings.prices)
        return usage.cost_usd

    async def aclose(self) -> None:
        """Release connections; the default has none."""
        return None

    @abstractmethod
    async def _attempt(self, request: ModelRequest) -> RawReply:
        """One try, without retries."""


def usage_problem(input_tokens: object, output_tokens: object) -> str | None:
    """Why a reply's token counts cannot be believed, or ``None`` when they can.

    Counts must be integers (not booleans or floats) from 0 to :data:`MAX_TOKENS_PER_CALL`.
    """
    for label, value in (("input", input_tokens), ("output", output_tokens)):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"a non-integer {label} token count ({_one_line(repr(value))})"
        if value < 0:
            return f"a negative {label} token count ({value})"
        if value > MAX_TOKENS_PER_CALL:
            return f"an absurd {label} token count ({value} > {MAX_TOKENS_PER_CALL})"
    return None


def backoff_delay(
    retry: int, settings: ProviderSettings, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before retry number ``retry`` (0-based): exponential, jittered, capped."""
    exponential = settings.retry_base_delay_s * (2.0**retry)
    jitter = rand() * settings.retry_base_delay_s
    return max(0.0, min(settings.retry_max_delay_s, exponential + jitter))


async def with_retries(
    call: Callable[[], Awaitable[T]],
    settings: ProviderSettings,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> T:
    """Await ``call()``, retrying retryable :class:`ProviderError` up to ``max_retries`` times.

    Non-retryable errors are raised at once. When the retries are used up, the last error is
    raised again with how many attempts were made appended to its message.
    """
    retries = max(0, settings.max_retries)
    for retry in range(retries + 1):
        try:
            return await call()
        except ProviderError as exc:
            if not exc.retryable:
                raise
            if retry == retries:
                if retries == 0:
                    raise
                raise _gave_up(exc, retry + 1) from exc
            delay = backoff_delay(retry, settings, rand)
            _log.warning("%s; retry %d of %d in %.2fs", exc, retry + 1, retries, delay)
            await sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _gave_up(exc: ProviderError, attempts: int) -> ProviderError:
    return ProviderError(f"{exc} (gave up after {attempts} attempts)", retryable=exc.retryable)


@dataclass(frozen=True)
class SdkErrorTypes:
    """One SDK's exception classes, so the mapping below needs no SDK import."""

    status: type[BaseException]
    timeout: type[BaseException]
    connection: type[BaseException]


@dataclass(frozen=True)
class Endpoint:
    """Where a client sends requests, for error messages: name, base URL, key variable.

    ``secrets`` are values (API keys) that must never appear in a message.
    """

    label: str
    url: str
    key_env: str | None
    secrets: tuple[str, ...] = ()
    timeout_s: float | None = None


def translate_error(exc: BaseException, sdk: SdkErrorTypes, endpoint: Endpoint) -> ProviderError:
    """Map an SDK exception to a one-line :class:`ProviderError` with ``retryable`` set."""
    if isinstance(exc, sdk.status):
        status = int(getattr(exc, "status_code", 0))
        message, retryable = _status_message(status, _body_detail(exc), endpoint)
    elif isinstance(exc, sdk.timeout):
        waited = f" after {endpoint.timeout_s:g}s" if endpoint.timeout_s is not None else ""
        message, retryable = f"no reply from {endpoint.url} (timed out{waited})", True
    elif isinstance(exc, sdk.connection):
        message, retryable = f"cannot reach {endpoint.url} ({connection_reason(exc)})", True
    else:
        detail = _one_line(str(exc)) or type(exc).__name__
        message, retryable = f"request to {endpoint.url} failed: {detail}", False
    return ProviderError(
        redact(f"{endpoint.label}: {message}", endpoint.secrets), retryable=retryable
    )


def unreadable_reply(endpoint: Endpoint, expected: str) -> ProviderError:
    """A 200 whose body is not what the API returns (an HTML page from a proxy, say)."""
    return ProviderError(f"{endpoint.label}: the reply from {endpoint.url} is not {expected}")


def _status_message(status: int, detail: str, endpoint: Endpoint) -> tuple[str, bool]:
    prefix = f"{status} from {endpoint.url}"
    check = f"check {endpoint.key_env}" if endpoint.key_env else "check the API key"
    if status == 401:
        return f"{prefix}: {check}", False
    if status == 403:
        return f"{prefix}: permission denied; {check}", False
    if status == 404:
        return f"{prefix}: {detail or 'not found'} (check the model name and base URL)", False
    retryable = status in (408, 409, 429) or status >= 500
    return (f"{prefix}: {detail}" if detail else prefix), retryable


def _body_detail(exc: BaseException) -> str:
    """The server's own error message, if the body has one (OpenAI or Anthropic shape)."""
    body: Any = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error")
        nested = inner.get("message") if isinstance(inner, Mapping) else inner
        for candidate in (body.get("message"), nested):
            if isinstance(candidate, str) and candidate.strip():
                return _one_line(candidate)
    if isinstance(body, str):
        return _one_line(body)
    return ""


def connection_reason(exc: BaseException) -> str:
    """A short reason for a connection failure, from the exception's cause chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    texts: list[str] = []
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        texts.append(str(current).lower())
        current = current.__cause__ or current.__context__
    joined = " ".join(texts)
    for needle, reason in _REASONS:
        if needle in joined:
            return reason
    deepest = next((t for t in reversed(texts) if t), "")
    return _one_line(deepest) or "connection error"


_REASONS: tuple[tuple[str, str], ...] = (
    ("connection refused", "connection refused"),
    ("errno 111", "connection refused"),
    ("name or service not known", "unknown host"),
    ("nodename nor servname", "unknown host"),
    ("temporary failure in name resolution", "unknown host"),
    ("certificate", "TLS certificate error"),
    ("network is unreachable", "network unreachable"),
    ("connection reset", "connection reset"),
    ("server disconnected", "server closed the connection"),
)


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret value replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _one_line(text: str) -> str:
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= _MAX_DETAIL else flat[: _MAX_DETAIL - 3] + "..."
