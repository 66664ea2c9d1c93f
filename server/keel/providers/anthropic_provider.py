"""``anthropic:<model>`` through the real anthropic SDK.

Anthropic has no JSON-schema response format, so structured output is a forced tool: one
tool named after the schema, ``tool_choice`` pinned to it, and the tool call's input is the
reply. The input is serialised back to JSON text so the engine validates every provider's
reply the same way. Exploration tools are offered beside it with ``tool_choice`` ``any``: a
``tool_use`` of one of them is a tool call, of the answer tool the answer; once the budget is
spent the answer tool is forced again.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
from anthropic.types import Message

from keel.engine.ports import ModelRequest, ProviderError, ToolCall
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
                max_tokens=request.max_tokens or MAX_TOKENS,
                system=request.system,
                messages=anthropic_messages(request),
                tools=anthropic_tools(request),
                tool_choice=anthropic_tool_choice(request),
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
        uses = [b for b in response.content if b.type == "tool_use"]
        answer = next((b.input for b in uses if b.name == schema_name), None)
        calls = tuple(
            ToolCall(id=b.id, name=b.name, arguments=b.input if isinstance(b.input, dict) else {})
            for b in uses
            if b.name != schema_name
        )
        if answer is None and not calls:
            if uses:  # no exploration offered: the forced tool's input is the answer
                answer = uses[0].input
            else:
                raise ProviderError(
                    f"{self.name}: the reply from {self._endpoint.url} has no "
                    f"{schema_name} tool call (stop reason: {response.stop_reason})"
                )
        return RawReply(
            text=json.dumps(answer) if answer is not None else "",
            model=self.name,
            input_tokens=response.usage.input_tokens,
            output_tokens=response.usage.output_tokens,
            tool_calls=calls if answer is None else (),
        )


def anthropic_messages(request: ModelRequest) -> list[Any]:
    """The user's prompt, then each exploration turn: the assistant's ``tool_use`` blocks and
    a user message of ``tool_result`` blocks (the budget notice, if any, after the last)."""
    messages: list[Any] = [{"role": "user", "content": request.prompt}]
    for index, turn in enumerate(request.turns, start=1):
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": c.id, "name": c.name, "input": dict(c.arguments)}
                    for c in turn.calls
                ],
            }
        )
        results: list[Any] = [
            {"type": "tool_result", "tool_use_id": call.id, "content": result}
            for call, result in zip(turn.calls, turn.results, strict=True)
        ]
        if request.notice and index == len(request.turns):
            results.append({"type": "text", "text": request.notice})
        messages.append({"role": "user", "content": results})
    if request.notice and not request.turns:
        messages[0] = {"role": "user", "content": request.prompt + "\n\n" + request.notice}
    return messages


def anthropic_tools(request: ModelRequest) -> list[Any]:
    """The answer tool named after the schema, and the exploration tools when offered."""
    answer = {
        "name": request.schema_name,
        "description": _tool_description(request.schema_name),
        "input_schema": dict(request.schema),
    }
    explore = [
        {"name": s.name, "description": s.description, "input_schema": dict(s.parameters)}
        for s in request.tools
    ]
    return [*explore, answer]


def anthropic_tool_choice(request: ModelRequest) -> Any:
    """Some tool while exploring (a read-only one or the answer); the answer tool once the
    budget is spent, or when nothing else is offered."""
    if request.tools and not request.must_answer:
        return {"type": "any"}
    return {"type": "tool", "name": request.schema_name}


def _tool_description(schema_name: str) -> str:
    return (
        f"Submit your answer as a {schema_name} object. Always call this tool: "
        "its input is your whole reply."
    )
