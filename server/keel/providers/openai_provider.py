"""``openai:<model>`` and ``openai-compatible:<model>`` through the real openai SDK.

One client serves both: the compatible flavour (Ollama, vLLM, llama.cpp, LM Studio,
OpenRouter, ...) differs only in where the base URL comes from and in not insisting on an API
key, since most local servers ignore it. Structured output is asked for with a
``json_schema`` response format named after the schema; the reply text is returned as is for
the engine to validate. Exploration tools are function ``tools`` beside that response format:
the model calls them (``tool_calls``) or answers with the schema, and once the budget is spent
``tool_choice`` is ``none``.

Compatible servers differ in what they accept (docs/how-to/use-a-local-model.md), so with
``structured = "auto"`` the client negotiates, one step per refusal: ``json_schema``, then
``json_object`` with the schema inside (llama.cpp's form), then a forced ``tools`` call whose
arguments are the reply, then ``prompt`` (the JSON Schema in the system prompt, the reply
parsed strictly). A refused request is sent again at once in the next mode, never twice in
the same one; the mode that then works is used for every later request and remembered per
endpoint and model in the store (:class:`~keel.engine.ports.StructuredModeMemory`). A
server that refuses only the exploration tools keeps its mode and is asked without them
(the architect then plans without exploring).
Every request carries ``max_tokens`` (``max_completion_tokens`` for ``openai``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from keel.engine.ports import (
    ConfigError,
    KeelError,
    ModelRequest,
    ProviderError,
    StructuredModeMemory,
    ToolCall,
)
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

_log = logging.getLogger(__name__)

#: The ways of asking for a structured reply, in the order ``auto`` tries them.
STRUCTURED_MODES: tuple[str, ...] = ("json_schema", "json_object", "tools", "prompt")

#: An error body that says the server does not understand how the reply was asked for (the
#: response format, the tools or the tool choice), as opposed to any other failure.
_REFUSAL = re.compile(
    r"response_format|json_schema|json_object|\btools?\b|tool_choice|function|"
    r"not supported|unsupported|not implemented",
    re.IGNORECASE,
)
_TOOLS = re.compile(r"\btools?\b|tool_choice|function", re.IGNORECASE)
_FORMAT = re.compile(r"response_format|json_schema|json_object", re.IGNORECASE)
#: Statuses with which servers refuse a request they do not understand (llama.cpp: 500).
_REFUSAL_STATUSES = frozenset({400, 415, 422, 500, 501})

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
        self._provider = provider
        chosen = settings.structured if provider == "openai-compatible" else "json_schema"
        if chosen != "auto" and chosen not in STRUCTURED_MODES:
            modes = ", ".join(("auto", *STRUCTURED_MODES))
            raise ConfigError(f"structured = {chosen!r}: use one of {modes}")
        self._negotiate = chosen == "auto"
        self._mode: str | None = None if self._negotiate else chosen
        self._memory: StructuredModeMemory | None = None
        self._unremembered = False  # a refusal moved the mode; store it once it works
        self._tools = True  # False once the server refused the exploration tools

    def use_memory(self, memory: StructuredModeMemory) -> None:
        """Recall and remember the negotiated mode in ``memory`` (the workspace's store)."""
        self._memory = memory

    @property
    def structured_mode(self) -> str | None:
        """The mode requests are sent in (``None`` until an ``auto`` client first asks)."""
        return self._mode

    @property
    def base_url(self) -> str:
        return self._endpoint.url

    def _where(self) -> str:
        return self._endpoint.url

    async def aclose(self) -> None:
        await self._sdk.close()

    async def _attempt(self, request: ModelRequest) -> RawReply:
        mode = await self._current_mode()
        while True:
            if not self._tools and request.tools:
                request = replace(request, tools=(), turns=(), notice="")
            try:
                response = await self._sdk.chat.completions.create(
                    model=self._model,
                    messages=openai_messages(request, mode),
                    **structured_arguments(request, mode),
                    **self._limit(request),
                    extra_headers=request.headers(),
                    timeout=self._settings.timeout_s,
                )
            except openai.OpenAIError as exc:
                error = translate_error(exc, _SDK_ERRORS, self._endpoint)
                if self._provider != "openai-compatible" or not _refuses(exc):
                    raise error from None
                if self._tools and request.tools and mode != "tools" and _about_tools(exc):
                    _log.warning("%s; exploring without tools from now on", error)
                    self._tools = False  # the same mode without the exploration tools
                    continue
                following = self._after_refusal(mode)
                if following is None:  # not retried: the same request would be refused again
                    raise ProviderError(
                        f"{error} (the server refuses structured output in {mode} mode; "
                        f"{_advice(mode, self._negotiate)})"
                    ) from None
                _log.warning("%s; asking in %s mode instead of %s", error, following, mode)
                mode = self._mode = following
                self._unremembered = True
                continue
            try:
                reply = self._read(response, request, mode)
            except (AttributeError, TypeError, IndexError) as exc:
                raise unreadable_reply(self._endpoint, "a chat completion") from exc
            if self._unremembered and mode == self._mode:
                self._unremembered = False
                await self._remember(mode)
            return reply

    async def _current_mode(self) -> str:
        """The mode to ask in: fixed by config, negotiated already, or recalled from memory."""
        if self._mode is not None:
            return self._mode
        recalled = None
        if self._memory is not None:
            try:
                recalled = await self._memory.structured_mode(self._endpoint.url, self._model)
            except KeelError as exc:
                _log.warning("%s: cannot recall its structured-output mode: %s", self.name, exc)
        if self._mode is None:  # another request may have negotiated meanwhile
            self._mode = recalled if recalled in STRUCTURED_MODES else STRUCTURED_MODES[0]
        return self._mode

    def _after_refusal(self, mode: str) -> str | None:
        """The next mode to try after the server refused ``mode``; ``None``: the mode is
        fixed by configuration, or there is nothing left to try."""
        if not self._negotiate:
            return None
        index = STRUCTURED_MODES.index(mode)
        if index + 1 >= len(STRUCTURED_MODES):
            return None
        current = self._mode if self._mode in STRUCTURED_MODES else mode
        # A concurrent request may have moved further already: never step back.
        return STRUCTURED_MODES[max(index + 1, STRUCTURED_MODES.index(current))]

    async def _remember(self, mode: str) -> None:
        if self._memory is None:
            return
        try:
            await self._memory.remember_structured_mode(self._endpoint.url, self._model, mode)
        except KeelError as exc:
            _log.warning("%s: cannot remember its structured-output mode: %s", self.name, exc)

    def _limit(self, request: ModelRequest) -> dict[str, Any]:
        """``max_tokens``, or ``max_completion_tokens`` for OpenAI itself (its newer models
        refuse the older name)."""
        if request.max_tokens is None:
            return {}
        if self._provider == "openai":
            return {"max_completion_tokens": request.max_tokens}
        return {"max_tokens": request.max_tokens}

    def _read(self, response: ChatCompletion, request: ModelRequest, mode: str) -> RawReply:
        choice = response.choices[0] if response.choices else None
        message = choice.message if choice is not None else None
        content = message.content if message is not None else None
        calls = _tool_calls(message.tool_calls if message is not None else None)
        if mode == "tools":
            answer = next((c for c in calls if c.name == request.schema_name), None)
            if answer is not None:  # the answer tool's arguments are the reply
                content, calls = _answer_text(message, request.schema_name), []
            elif content and calls and all(c.name == request.schema_name for c in calls):
                calls = []
        if not content and not calls:
            raise ProviderError(f"{self.name}: empty reply from {self._endpoint.url}")
        usage = response.usage
        return RawReply(
            text="" if calls else content or "",
            model=self.name,
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
            tool_calls=tuple(calls),
            truncated=choice is not None and choice.finish_reason == "length",
        )


def structured_arguments(request: ModelRequest, mode: str) -> dict[str, Any]:
    """How ``mode`` asks for the reply: ``response_format``, ``tools`` and ``tool_choice``."""
    schema = dict(request.schema)
    if mode == "json_schema":
        form = {
            "type": "json_schema",
            "json_schema": {"name": request.schema_name, "schema": schema, "strict": False},
        }
        return {**openai_tools(request), "response_format": form}
    if mode == "json_object":  # llama.cpp's form; others ignore "schema" and give JSON
        return {
            **openai_tools(request),
            "response_format": {"type": "json_object", "schema": schema},
        }
    if mode == "tools":
        answer = {
            "type": "function",
            "function": {
                "name": request.schema_name,
                "description": f"Answer with the {request.schema_name}.",
                "parameters": schema,
            },
        }
        explore = openai_tools(request).get("tools", [])
        forced = {"type": "function", "function": {"name": request.schema_name}}
        choice: Any = "auto" if explore and not request.must_answer else forced
        return {"tools": [*explore, answer], "tool_choice": choice}
    return {}  # prompt: the schema is in the system prompt, no tools (the server has none)


def prompt_schema(request: ModelRequest) -> str:
    """What ``prompt`` mode adds to the system prompt: the reply's JSON Schema."""
    return (
        f"\n\nReply with the {request.schema_name} as one JSON object and nothing else, valid "
        f"against this JSON Schema:\n{json.dumps(dict(request.schema), separators=(',', ':'))}"
    )


def _answer_text(message: Any, name: str) -> str:
    """The arguments of the call to the answer tool ``name``, as the model sent them."""
    for call in message.tool_calls or ():
        function = getattr(call, "function", None)
        if function is not None and function.name == name:
            return str(function.arguments or "")
    return ""


def _refuses(exc: openai.OpenAIError) -> bool:
    """Whether ``exc`` is the server refusing how the reply was asked for."""
    if not isinstance(exc, openai.APIStatusError):
        return False
    return exc.status_code in _REFUSAL_STATUSES and bool(_REFUSAL.search(_error_text(exc)))


def _about_tools(exc: openai.OpenAIError) -> bool:
    """Whether a refusal is of the (exploration) tools rather than of the response format."""
    if not isinstance(exc, openai.APIStatusError):
        return False
    text = _error_text(exc)
    return bool(_TOOLS.search(text)) and not _FORMAT.search(text)


def _advice(mode: str, negotiated: bool) -> str:
    if negotiated:
        return "no other way of asking for structured output is left to try"
    return (
        'set structured = "auto" under [providers.openai-compatible] in keel.toml to let Keel '
        "find the mode the server accepts"
    )


def _error_text(exc: openai.APIStatusError) -> str:
    """Everything the server said about an error: its body and the SDK's message."""
    body = exc.body
    try:
        said = json.dumps(body) if not isinstance(body, str) else body
    except (TypeError, ValueError):
        said = str(body)
    return f"{said} {exc.message}"


def openai_messages(request: ModelRequest, mode: str = "json_schema") -> list[Any]:
    """System, user, then each exploration turn: the assistant's calls and one tool message
    per result; the budget notice, if any, is a last user message. In ``prompt`` mode the
    system prompt ends with the reply's JSON Schema."""
    system = request.system + (prompt_schema(request) if mode == "prompt" else "")
    messages: list[Any] = [
        {"role": "system", "content": system},
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
