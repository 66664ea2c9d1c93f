"""Turn a ``PROVIDER:MODEL`` name from config or flags into a model client.

Provider modules are imported only when named, so a session that uses one SDK (or a
recorded transcript) does not pay for importing the other.
"""

from __future__ import annotations

from keel.engine.ports import ConfigError, ModelClient
from keel.providers.base import ProviderSettings

#: Every provider a model name may start with, in the order error messages list them.
PROVIDERS: tuple[str, ...] = ("openai", "openai-compatible", "anthropic", "replay")


def parse_model_spec(spec: str) -> tuple[str, str]:
    """``"openai:gpt-4.1"`` -> ``("openai", "gpt-4.1")``; ConfigError for anything else."""
    provider, sep, model = spec.strip().partition(":")
    valid = ", ".join(PROVIDERS)
    if not sep or not provider or not model.strip():
        raise ConfigError(
            f"bad model {spec!r}: expected PROVIDER:MODEL with PROVIDER one of {valid}"
        )
    if provider not in PROVIDERS:
        raise ConfigError(f"unknown model provider {provider!r} in {spec!r}: use one of {valid}")
    return provider, model.strip()


def build_model_client(spec: str, settings: ProviderSettings) -> ModelClient:
    """The client for ``spec``; raises ConfigError for a bad name or missing key or URL."""
    provider, model = parse_model_spec(spec)
    if provider == "anthropic":
        from keel.providers.anthropic_provider import AnthropicClient

        return AnthropicClient(model, settings)
    if provider == "replay":
        from keel.providers.replay import ReplayClient

        return ReplayClient(model, settings)
    from keel.providers.openai_provider import OpenAIClient

    return OpenAIClient(provider, model, settings)
