"""build_model_client: PROVIDER:MODEL parsing and fail-fast configuration errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.engine.ports import ConfigError
from keel.providers import ProviderSettings, build_model_client
from keel.providers.anthropic_provider import AnthropicClient
from keel.providers.openai_provider import OpenAIClient
from keel.providers.registry import parse_model_spec
from keel.providers.replay import ReplayClient

ENV = {"OPENAI_API_KEY": "sk-x", "ANTHROPIC_API_KEY": "sk-ant-x"}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("openai:gpt-4.1", ("openai", "gpt-4.1")),
        ("openai-compatible:qwen2.5-coder:7b", ("openai-compatible", "qwen2.5-coder:7b")),
        ("anthropic:claude-sonnet-4-5", ("anthropic", "claude-sonnet-4-5")),
        ("replay:demo/calc.jsonl", ("replay", "demo/calc.jsonl")),
        (" openai:gpt-4o ", ("openai", "gpt-4o")),
    ],
)
def test_specs_are_split_at_the_first_colon(spec: str, expected: tuple[str, str]) -> None:
    assert parse_model_spec(spec) == expected


@pytest.mark.parametrize("spec", ["gpt-4.1", "openai:", ":gpt-4.1", "", "openai:  "])
def test_malformed_spec_is_a_config_error(spec: str) -> None:
    with pytest.raises(ConfigError, match="expected PROVIDER:MODEL") as err:
        build_model_client(spec, ProviderSettings(env=ENV))
    assert "openai, openai-compatible, anthropic, replay" in str(err.value)


def test_unknown_provider_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as err:
        build_model_client("gemini:pro", ProviderSettings(env=ENV))
    assert str(err.value) == (
        "unknown model provider 'gemini' in 'gemini:pro': "
        "use one of openai, openai-compatible, anthropic, replay"
    )


async def test_each_provider_builds_its_client(tmp_path: Path) -> None:
    transcript = tmp_path / "t.jsonl"
    transcript.write_text('{"keel_transcript": 1}\n', encoding="utf-8")
    settings = ProviderSettings(env=ENV, openai_compatible_base_url="http://127.0.0.1:1/v1")
    openai_client = build_model_client("openai:gpt-4.1", settings)
    compatible = build_model_client("openai-compatible:llama3", settings)
    claude = build_model_client("anthropic:claude-haiku-4-5", settings)
    replay = build_model_client(f"replay:{transcript}", settings)
    assert isinstance(openai_client, OpenAIClient)
    assert isinstance(compatible, OpenAIClient)
    assert isinstance(claude, AnthropicClient)
    assert isinstance(replay, ReplayClient)
    assert openai_client.base_url == "https://api.openai.com/v1"
    assert claude.base_url == "https://api.anthropic.com"
    assert [c.name for c in (openai_client, compatible, claude)] == [
        "openai:gpt-4.1",
        "openai-compatible:llama3",
        "anthropic:claude-haiku-4-5",
    ]
    for c in (openai_client, compatible, claude):
        await c.aclose()


@pytest.mark.parametrize(
    ("spec", "variable"),
    [("openai:gpt-4.1", "OPENAI_API_KEY"), ("anthropic:claude-sonnet-4-5", "ANTHROPIC_API_KEY")],
)
def test_missing_key_fails_when_the_client_is_built(spec: str, variable: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable} is not set"):
        build_model_client(spec, ProviderSettings(env={}))


def test_missing_transcript_fails_when_the_client_is_built(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        build_model_client(f"replay:{tmp_path / 'missing.jsonl'}", ProviderSettings(env={}))
