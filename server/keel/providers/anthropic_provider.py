"""``anthropic:<model>`` through the real anthropic SDK.

Anthropic has no JSON-schema response format, so structured output is a forced tool: one
tool named after the schema, ``tool_choice`` pinned to it, and the tool call's input is the
reply. The input is serialised back to JSON text so the engine validates every provider's
reply the same way.
"""

from __future__ import annotations

import json

import anthropic
from anthropic.types import Message

from keel.engine.ports import ModelRequest, ProviderError
from keel.providers.base import (
    Endpoint,
    ProviderSettings,
    RawReply,
    RetryingClient,
    SdkErrorTypes,
    translate_error,
    unreadable_reply,
)

ANTHROPIC_DEFAULT_BASE_URL = "https://api.anthropic.com"
MAX_TOKENS = 8192

_SDK_ERRORS = SdkErrorTypes(
    status=anthropic.APIStatusError,
    timeout=anthropic.APITimeoutError,
    connection=anthropic.APIConnectionError,
)


class AnthropicClient(RetryingClient):
    """A Messages API model. Raises :class:`ConfigError` at construction without a key."""

    def __init__(self, model: str, settings: ProviderSettings) -> None:
        super().__init__(f"anthropic:{model}", settings)
        self._model = model
        key = settings.require_api_key("anthropic")
        base_url = settings.env.get("ANTHROPIC_BASE_URL") or ANTHROPIC_DEFAULT_BASE_URL
        self._endpoint = Endpoint(
            label=self.name,
            url=base_url.rstrip("/"),
            key_env=settings.key_env("anthropic"),
            secrets=(key,),
            timeout_s=settings.timeout_s,
        )
        self._sdk = anthropic.AsyncAnthropic(
            api_key=key, base_url=base_url, timeout=settings.timeout_s, max_retries=0
        )

    @property
    def base_url(self) -> str:
        return self._endpoint.url

    def _where(self) -> str:
        return self._endpoint.url

    async def aclose(self) -> None:
        await self._sdk.close()

    async def _attempt(self, request: ModelRequest) -> RawReply:
        try:
            response = await self._sdk.messages.create(
                model=self._model,
                max_tokens=MAX_TOKENS,
                system=request.system,
                messages=[{"role": "user", "content": request.prompt}],
                tools=[
                    {
                        "name": request.schema_name,
                        "description": _tool_description(request.schema_name),
                        "input_schema": dict(request.schema),
                    }
                ],
                tool_choice={"type": "tool", "name": request.schema_name},
                extra_headers=request.headers(),
                timeout=self._settings.timeout_s,
            )
        except anthropic.AnthropicError as exc:
            raise translate_error(exc, _SDK_ERRORS, self._endpoint) from None
        try:
            return self._read(response, request.schema_name)
        except (AttributeError, TypeError, IndexError) as exc:
            raise unreadable_reply(self._endpoint, "a Messages API reply") from exc

    def _read(self, response: Message, schema_name: str) -> RawReply:
        tool_input = next((b.input for b in response.content if b.type == "tool_use"), None)
        if tool_input is None:
            raise ProviderError(
                f"{self.name}: the reply from {self._endpoint.url} has no "
                f"{schema_name} tool call (stop reason: {response.stop_reason})"
            )
        return RawReply(
            text=json.dumps(tool_input),
            model=self.name,
            input_tokens=response.usage.input_tokens,
            output_tokens=response.usage.output_tokens,
        )


def _tool_description(schema_name: str) -> str:
    return (
        f"Submit your answer as a {schema_name} object. Always call this tool: "
        "its input is your whole reply."
    )
