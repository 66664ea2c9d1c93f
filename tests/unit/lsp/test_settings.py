"""Settings from the editor: keel.toml's keys, validated, invalid values dropped and reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keel.lsp.settings import resolve


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config")}


def test_defaults_without_any_setting(tmp_path: Path, env: dict[str, str]) -> None:
    resolved = resolve(tmp_path, env)
    assert resolved.problems == []
    assert resolved.config.engine.mode == "balanced" and resolved.config.models.default


def test_editor_settings_use_keel_toml_keys_and_later_layers_win(
    tmp_path: Path, env: dict[str, str]
) -> None:
    init: dict[str, Any] = {
        "models": {"default": "openai:gpt-4.1", "architect": "anthropic:claude-sonnet-4-5"},
        "engine": {"mode": "cautious", "stability_threshold": 0.5, "energy_weights": [1, 1, 1]},
        "budget": {"max_cost": 2.5, "max_steps": 40},
    }
    configuration = {"engine": {"mode": "yolo"}}
    resolved = resolve(tmp_path, env, init, configuration)
    assert resolved.problems == []
    config = resolved.config
    assert config.engine.mode == "yolo" and config.engine.stability_threshold == 0.5
    assert config.models.architect == "anthropic:claude-sonnet-4-5"
    assert config.budget.max_cost == 2.5 and config.budget.max_steps == 40
    assert config.engine_settings(auto_approve=False).weights.log == 1


def test_invalid_values_are_reported_and_the_rest_is_kept(
    tmp_path: Path, env: dict[str, str]
) -> None:
    (tmp_path / "keel.toml").write_text('[engine]\nmode = "cautious"\nmax_attempts = 5\n')
    init = {
        "engine": {"mode": "reckless", "max_attempts": 0, "complexity_k": 7},
        "models": {"default": "gpt-4.1-without-provider-is-still-a-string"},
        "budget": {"max_cost": -1},
        "trace": {"server": "verbose"},  # an extension's own setting: not Keel's business
    }
    resolved = resolve(tmp_path, env, init)
    config = resolved.config
    assert config.engine.mode == "cautious" and config.engine.max_attempts == 5  # keel.toml kept
    assert config.engine.complexity_k == 7  # the valid sibling applies
    assert config.budget.max_cost is None
    problems = " | ".join(resolved.problems)
    assert len(resolved.problems) == 3, problems
    assert "engine.mode = 'reckless' ignored" in problems
    assert "engine.max_attempts = 0 ignored" in problems
    assert "budget.max_cost = -1 ignored" in problems and "trace" not in problems


def test_all_zero_energy_weights_from_the_editor_are_refused(
    tmp_path: Path, env: dict[str, str]
) -> None:
    resolved = resolve(tmp_path, env, {"engine": {"energy_weights": [0, 0, 0, 0, 0]}})
    assert resolved.config.engine.energy_weights == [1.0, 0.5, 2.0, 1.0, 1.0]
    assert len(resolved.problems) == 1
    assert "engine.energy_weights" in resolved.problems[0]
    assert "must not all be zero" in resolved.problems[0]


def test_unknown_keys_in_a_section_and_non_objects_are_reported(
    tmp_path: Path, env: dict[str, str]
) -> None:
    resolved = resolve(tmp_path, env, {"engine": {"modus": "yolo"}}, ["not", "an", "object"])
    assert resolved.config.engine.mode == "balanced"
    assert any("engine.modus" in p for p in resolved.problems)
    assert any("must be an object" in p for p in resolved.problems)


def test_a_broken_keel_toml_is_reported_and_skipped(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "keel.toml").write_text("[engine\nmode = ")
    resolved = resolve(tmp_path, env, {"engine": {"mode": "yolo"}})
    assert resolved.config.engine.mode == "yolo"
    assert any("keel.toml" in p for p in resolved.problems)


def test_environment_sits_below_the_editor(tmp_path: Path, env: dict[str, str]) -> None:
    env = {**env, "KEEL_MODE": "yolo", "KEEL_MAX_STEPS": "9"}
    resolved = resolve(tmp_path, env, {"engine": {"mode": "cautious"}})
    assert resolved.config.engine.mode == "cautious" and resolved.config.budget.max_steps == 9
    bad = resolve(tmp_path, {**env, "KEEL_MODE": "fast"})
    assert bad.config.engine.mode == "balanced" and "using the defaults" in bad.problems[0]
