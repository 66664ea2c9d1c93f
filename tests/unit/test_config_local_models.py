"""``[max_tokens]`` and ``[providers.openai-compatible] structured``: defaults, layering and
clear errors for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.app import provider_settings
from keel.config import load_config
from keel.engine.models import Tier
from keel.engine.ports import ConfigError


def test_every_tier_has_a_documented_default_bound(tmp_path: Path) -> None:
    settings = load_config(tmp_path, env={}).engine_settings(auto_approve=False)
    assert settings.max_reply_tokens == {
        Tier.ARCHITECT: 4096,
        Tier.ACTUATOR: 16_384,
        Tier.VERIFIER: 2048,
        Tier.SPECULATOR: 2048,
    }


def test_keel_toml_sets_the_bounds_and_the_structured_mode(tmp_path: Path) -> None:
    (tmp_path / "keel.toml").write_text(
        "[max_tokens]\nactuator = 3000\n\n"
        '[providers.openai-compatible]\nbase_url = "http://127.0.0.1:8080/v1"\n'
        'structured = "json_object"\n'
    )
    config = load_config(tmp_path, env={})
    assert config.engine_settings(auto_approve=False).max_reply_tokens[Tier.ACTUATOR] == 3000
    assert provider_settings(config, {}).structured == "json_object"


def test_structured_defaults_to_auto(tmp_path: Path) -> None:
    assert provider_settings(load_config(tmp_path, env={}), {}).structured == "auto"


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ('[providers.openai-compatible]\nstructured = "yaml"\n', "structured"),
        ("[max_tokens]\narchitect = 10\n", "max_tokens.architect"),
        ("[max_tokens]\nplanner = 4000\n", "max_tokens.planner"),
        ('[providers.openai]\nstructured = "tools"\n', "only openai-compatible"),
        ('[providers.anthropic]\nstructured = "auto"\n', "only openai-compatible"),
    ],
)
def test_bad_values_are_one_clear_config_error(tmp_path: Path, toml: str, needle: str) -> None:
    (tmp_path / "keel.toml").write_text(toml)
    with pytest.raises(ConfigError, match=needle):
        load_config(tmp_path, env={})
