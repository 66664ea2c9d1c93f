"""``openai:<model>`` and ``openai-compatible:<model>`` through the real openai SDK.

One client serves both: the compatible flavour (Ollama, vLLM, llama.cpp, LM Studio,
OpenRouter, ...) differs only in where the base URL comes from and in not insisting on an API
key, since most local servers ignore it. Structured output is asked for with a
``json_schema`` response format named after the schema; the reply text is returned as is for
the engine to validate.
"""

from __future__ import annotations

import openai
from openai.types.chat import ChatCompletion

from keel.engine.ports import ConfigError, ModelRequest, ProviderError
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
                messages=[
                    {"role": "system", "content": request.system},
                    {"role": "user", "content": request.prompt},
                ],
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
        content = response.choices[0].message.content if response.choices else None
        if not content:
            raise ProviderError(f"{self.name}: empty reply from {self._endpoint.url}")
        usage = response.usage
        return RawReply(
            text=content,
            model=self.name,
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
        )


def _compatible_base_url(model: str, settings: ProviderSettings) -> str:
    url = settings.env.get("OPENAI_BASE_URL") or settings.openai_compatible_base_url
    if not url:
        raise ConfigError(
            f"openai-compatible:{model} needs a base URL: set OPENAI_BASE_URL, or base_url "
            "under [providers.openai-compatible] in keel.toml"
        )
    return url
