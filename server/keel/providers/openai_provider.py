"""``openai:<model>`` and ``openai-compatible:<model>`` through the real openai SDK.

One client serves both: the compatible flavour (Ollama, vLLM, llama.cpp, LM Studio,
OpenRouter, ...) differs only in where the base URL comes from and in not insisting on an API
key, since most local servers ignore it. Structured output is asked for with a
``json_schema`` response format named after the schema; the reply text is returned as is for
the engine to validate. Exploration tools are function ``tools`` beside that response format:
the model calls them (``tool_calls``) or answers with the schema, and once the budget is spent
``tool_choice`` is ``none``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from keel.engine.ports import ConfigError, ModelRequest, ProviderError, ToolCall
from keel.providers.base import (
    Endpoint,
    ProviderSettings,
    RawReply,
    RetryingClient,
    SdkErrorTypes,
    translate_error,
    unreadable_reply,
)

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
COMPATIBLE_PLACEHOLDER_KEY = "not-needed"

_SDK_ERRORS = SdkErrorTypes(
    status=openai.APIStatusError,
    timeout=openai.APITimeoutError,
    connection=openai.APIConnectionError,
)


class OpenAIClient(RetryingClient):
    """A chat-completions model; ``provider`` is ``openai`` or ``openai-compatible``.

    Raises :class:`ConfigError` at construction when the key (``openai``) or the base URL
    (``openai-compatible``) is missing, so that a session fails before it starts.
    """

    def __init__(self, provider: str, model: str, settings: ProviderSettings) -> None:
        super().__init__(f"{provider}:{model}", settings)
        self._model = model
        if provider == "openai":
            key = settings.require_api_key(provider)
            base_url = settings.env.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_BASE_URL
        elif provider == "openai-compatible":
            key = settings.api_key(provider) or COMPATIBLE_PLACEHOLDER_KEY
            base_url = _compatible_base_url(model, settings)
        else:
            raise ConfigError(f"OpenAIClient does not serve provider '{provider}'")
        self._endpoint = Endpoint(
            label=self.name,
            url=base_url.rstrip("/"),
            key_env=settings.key_env(provider),
            secrets=(key,),
            timeout_s=settings.timeout_s,
        )
        self._sdk = openai.AsyncOpenAI(
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
            response = await self._sdk.chat.completions.create(
                model=self._model,
                messages=openai_messages(request),
                **openai_tools(request),
                response_format={
                    "type": "json_schema",
                    "json_schema": {
                        "name": request.schema_name,
                        "schema": dict(request.schema),
                        "strict": False,
                    },
                },
                extra_headers=request.headers(),
                timeout=self._settings.timeout_s,
            )
        except openai.OpenAIError as exc:
            raise translate_error(exc, _SDK_ERRORS, self._endpoint) from None
        try:
            return self._read(response)
        except (AttributeError, TypeError, IndexError) as exc:
            raise unreadable_reply(self._endpoint, "a chat completion") from exc

    def _read(self, response: ChatCompletion) -> RawReply:
        message = response.choices[0].message if response.choices else None
        content = message.content if message is not None else None
        calls = _tool_calls(message.tool_calls if message is not None else None)
        if not content and not calls:
            raise ProviderError(f"{self.name}: empty reply from {self._endpoint.url}")
        usage = response.usage
        return RawReply(
            text="" if calls else content or "",
            model=self.name,
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
            tool_calls=tuple(calls),
        )


def openai_messages(request: ModelRequest) -> list[Any]:
    """System, user, then each exploration turn: the assistant's calls and one tool message
    per result; the budget notice, if any, is a last user message."""
    messages: list[Any] = [
        {"role": "system", "content": request.system},
        {"role": "user", "content": request.prompt},
    ]
    for turn in request.turns:
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                    }
                    for call in turn.calls
                ],
            }
        )
        for call, result in zip(turn.calls, turn.results, strict=True):
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    if request.notice:
        messages.append({"role": "user", "content": request.notice})
    return messages


def openai_tools(request: ModelRequest) -> dict[str, Any]:
    """The ``tools`` and ``tool_choice`` arguments: none without exploration; ``none`` once
    the model must answer (the tools stay declared: the history refers to them)."""
    if not request.tools:
        return {}
    return {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": spec.name,
                    "description": spec.description,
                    "parameters": dict(spec.parameters),
                },
            }
            for spec in request.tools
        ],
        "tool_choice": "none" if request.must_answer else "auto",
    }


def _tool_calls(calls: Sequence[Any] | None) -> list[ToolCall]:
    """The function calls of a reply; arguments that are not a JSON object become
    ``{"_unparsed": text}``, which every tool refuses with a reason the model reads."""
    out = []
    for call in calls or ():
        function = getattr(call, "function", None)
        if function is None:
            continue
        raw = function.arguments or "{}"
        try:
            arguments = json.loads(raw)
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            arguments = {"_unparsed": raw[:500]}
        out.append(ToolCall(id=call.id, name=function.name, arguments=arguments))
    return out


def _compatible_base_url(model: str, settings: ProviderSettings) -> str:
    url = settings.env.get("OPENAI_BASE_URL") or settings.openai_compatible_base_url
    if not url:
        raise ConfigError(
            f"openai-compatible:{model} needs a base URL: set OPENAI_BASE_URL, or base_url "
            "under [providers.openai-compatible] in keel.toml"
        )
    return url
