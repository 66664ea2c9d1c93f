"""Configuration layering (docs/reference/configuration.md): defaults < user file < keel.toml
< KEEL_* < flags, validated once, with every invalid value a ConfigError that names its field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from keel.config import KeelConfig, load_config
from keel.engine.gateway import Budget
from keel.engine.models import EnergyWeights, Tier
from keel.engine.ports import ConfigError


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    return path


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment whose user config directory is inside tmp_path (and starts empty)."""
    return {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}


def _user_config(env: dict[str, str], text: str) -> None:
    path = Path(env["XDG_CONFIG_HOME"]) / "keel" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _load(workspace: Path, env: dict[str, str], flags: dict[str, Any] | None = None) -> KeelConfig:
    return load_config(workspace, env=env, flags=flags or {})


def test_defaults_apply_with_no_files_env_or_flags(workspace: Path, env: dict[str, str]) -> None:
    config = _load(workspace, env)
    assert config.models.default == "openai:gpt-4.1"
    assert config.engine.mode == "balanced"
    assert config.engine.energy_weights == [1.0, 0.5, 2.0, 1.0, 1.0]
    assert config.engine.stability_threshold == 0.1
    assert config.budget.max_cost is None
    assert config.budget.max_steps == 100
    assert config.log_llm is False


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ((), 3),
        (("user",), 4),
        (("user", "workspace"), 5),
        (("user", "workspace", "env"), 6),
        (("user", "workspace", "env", "flag"), 7),
        (("user", "flag"), 7),
        (("workspace", "env"), 6),
        (("user", "env"), 6),
    ],
)
def test_later_layers_win(
    workspace: Path, env: dict[str, str], layers: tuple[str, ...], expected: int
) -> None:
    flags: dict[str, Any] = {}
    if "user" in layers:
        _user_config(env, "[engine]\nmax_attempts = 4\n")
    if "workspace" in layers:
        (workspace / "keel.toml").write_text("[engine]\nmax_attempts = 5\n")
    if "env" in layers:
        env["KEEL_MAX_ATTEMPTS"] = "6"
    if "flag" in layers:
        flags["max_attempts"] = 7
    assert _load(workspace, env, flags).engine.max_attempts == expected


def test_the_user_file_falls_back_to_home_dot_config(tmp_path: Path, workspace: Path) -> None:
    home = tmp_path / "home"
    (home / ".config" / "keel").mkdir(parents=True)
    (home / ".config" / "keel" / "config.toml").write_text('[engine]\nmode = "yolo"\n')
    assert _load(workspace, {"HOME": str(home)}).engine.mode == "yolo"


def test_tables_merge_across_layers(workspace: Path, env: dict[str, str]) -> None:
    _user_config(env, '[models]\narchitect = "anthropic:big"\n')
    (workspace / "keel.toml").write_text('[models]\ndefault = "openai:small"\n')
    config = _load(workspace, env)
    assert config.models.for_tier(Tier.ARCHITECT) == "anthropic:big"
    assert config.models.for_tier(Tier.ACTUATOR) == "openai:small"


def test_model_flag_clears_tier_models_from_lower_layers(
    workspace: Path, env: dict[str, str]
) -> None:
    _user_config(env, '[models]\narchitect = "anthropic:big"\n')
    (workspace / "keel.toml").write_text('[models]\nverifier = "openai:checker"\n')
    env["KEEL_ACTUATOR_MODEL"] = "openai:coder"
    config = _load(workspace, env, {"model": "replay:demo.jsonl"})
    assert {tier: config.models.for_tier(tier) for tier in Tier} == dict.fromkeys(
        Tier, "replay:demo.jsonl"
    )


def test_model_flag_keeps_tier_models_named_on_the_same_command_line(
    workspace: Path, env: dict[str, str]
) -> None:
    (workspace / "keel.toml").write_text('[models]\narchitect = "openai:file-architect"\n')
    config = _load(workspace, env, {"model": "openai:one", "architect_model": "anthropic:arch"})
    assert config.models.for_tier(Tier.ARCHITECT) == "anthropic:arch"
    assert config.models.for_tier(Tier.ACTUATOR) == "openai:one"


def test_keel_model_env_sets_only_the_default(workspace: Path, env: dict[str, str]) -> None:
    (workspace / "keel.toml").write_text('[models]\narchitect = "anthropic:big"\n')
    env["KEEL_MODEL"] = "openai:env"
    config = _load(workspace, env)
    assert config.models.for_tier(Tier.ARCHITECT) == "anthropic:big"
    assert config.models.for_tier(Tier.VERIFIER) == "openai:env"


def test_energy_weights_come_from_the_flag_string(workspace: Path, env: dict[str, str]) -> None:
    config = _load(workspace, env, {"energy_weights": "2, 1,4"})
    assert config.engine.energy_weights == [2.0, 1.0, 4.0]
    weights = config.engine_settings(auto_approve=False).weights
    assert weights == EnergyWeights(syn=2.0, str=1.0, log=4.0, boot=1.0, sheaf=1.0)


def test_energy_weights_come_from_the_environment(workspace: Path, env: dict[str, str]) -> None:
    env["KEEL_ENERGY_WEIGHTS"] = "1,1,1,0,0"
    assert _load(workspace, env).engine.energy_weights == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_env_strings_are_coerced(workspace: Path, env: dict[str, str]) -> None:
    env.update(KEEL_MAX_COST="2.5", KEEL_DEFER_TESTS="true", KEEL_STABILITY_THRESHOLD="0.3")
    config = _load(workspace, env)
    assert config.budget.max_cost == 2.5
    assert config.engine.defer_tests is True
    assert config.engine.stability_threshold == 0.3


@pytest.mark.parametrize(
    ("source", "value", "field"),
    [
        ("flags", {"mode": "fast"}, "engine.mode"),
        ("flags", {"stability_threshold": -0.1}, "engine.stability_threshold"),
        ("flags", {"energy_weights": "1,2"}, "engine.energy_weights"),
        ("flags", {"energy_weights": "1,-2,3"}, "engine.energy_weights"),
        ("flags", {"energy_weights": "0,0,0,0,0"}, "engine.energy_weights"),
        ("env", {"KEEL_ENERGY_WEIGHTS": "0,0,0,0,0"}, "engine.energy_weights"),
        ("toml", "[engine]\nenergy_weights = [0, 0, 0, 0, 0]\n", "engine.energy_weights"),
        ("flags", {"max_attempts": 0}, "engine.max_attempts"),
        ("flags", {"max_cost": -1}, "budget.max_cost"),
        ("env", {"KEEL_MAX_STEPS": "lots"}, "budget.max_steps"),
        ("env", {"KEEL_MODE": "fast"}, "engine.mode"),
        ("toml", "[engine]\nmode = 'fast'\n", "engine.mode"),
        ("toml", "[engine]\nspeed = 11\n", "engine.speed"),
        ("toml", "colour = 'blue'\n", "colour"),
        ("toml", "[providers.openai]\napi_key = 'sk-oops'\n", "providers.openai.api_key"),
    ],
)
def test_invalid_values_are_config_errors_naming_the_field(
    workspace: Path, env: dict[str, str], source: str, value: Any, field: str
) -> None:
    flags: dict[str, Any] = {}
    if source == "flags":
        flags = value
    elif source == "env":
        env.update(value)
    else:
        (workspace / "keel.toml").write_text(value)
    with pytest.raises(ConfigError, match="invalid configuration") as info:
        _load(workspace, env, flags)
    assert f"{field}:" in str(info.value)


def test_broken_toml_is_a_config_error_naming_the_file(
    workspace: Path, env: dict[str, str]
) -> None:
    (workspace / "keel.toml").write_text("[engine\nmode = ")
    with pytest.raises(ConfigError, match=r"keel\.toml"):
        _load(workspace, env)


def test_broken_user_config_is_a_config_error_naming_the_file(
    workspace: Path, env: dict[str, str]
) -> None:
    _user_config(env, "= nothing")
    with pytest.raises(ConfigError, match=r"config\.toml"):
        _load(workspace, env)


def test_engine_settings_carry_the_resolved_values(workspace: Path, env: dict[str, str]) -> None:
    (workspace / "keel.toml").write_text(
        "[engine]\nmode = 'cautious'\ncomplexity_k = 7\ndefer_tests = true\n"
        "[budget]\nmax_cost = 4.0\n"
    )
    env["KEEL_MAX_STEPS"] = "12"
    flags = {
        "energy_weights": "3,2,1,0.5,0.25",
        "stability_threshold": 0.05,
        "max_attempts": 5,
        "log_llm": True,
    }
    settings = _load(workspace, env, flags).engine_settings(auto_approve=True)

    assert settings.weights == EnergyWeights(syn=3.0, str=2.0, log=1.0, boot=0.5, sheaf=0.25)
    assert settings.epsilon == 0.05
    assert settings.max_attempts == 5
    assert settings.mode == "cautious"
    assert settings.complexity_k == 7
    assert settings.defer_tests is True
    assert settings.budget == Budget(max_cost=4.0, max_steps=12)
    assert settings.log_llm is True
    assert settings.auto_approve is True
    assert settings.needs_approval(0)


def test_flags_that_are_none_do_not_override(workspace: Path, env: dict[str, str]) -> None:
    (workspace / "keel.toml").write_text("[engine]\nmode = 'yolo'\n[budget]\nmax_steps = 9\n")
    flags = {"mode": None, "max_steps": None, "model": None, "energy_weights": None}
    config = _load(workspace, env, flags)
    assert config.engine.mode == "yolo"
    assert config.budget.max_steps == 9


def test_the_sandbox_is_on_by_default_and_configurable(
    workspace: Path, env: dict[str, str]
) -> None:
    default = _load(workspace, env).sandbox
    assert (default.mode, default.network, default.memory_mb) == ("auto", False, 8192)
    (workspace / "keel.toml").write_text(
        '[sandbox]\nmode = "off"\nnetwork = true\nmemory_mb = 0\nreadonly_paths = ["~/tc"]\n'
    )
    config = _load(workspace, env).sandbox
    assert (config.mode, config.network, config.memory_mb) == ("off", True, 0)
    assert config.readonly_paths == ["~/tc"]
    from_env = _load(workspace, {**env, "KEEL_SANDBOX": "auto", "KEEL_SANDBOX_NETWORK": "0"})
    assert (from_env.sandbox.mode, from_env.sandbox.network) == ("auto", False)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('mode = "none"', "sandbox.mode"),
        ("memory_mb = -1", "sandbox.memory_mb"),
        ('readonly_paths = ["relative/dir"]', "sandbox.readonly_paths"),
        ("network = 2", "sandbox.network"),
        ("writable = true", "sandbox.writable"),
    ],
)
def test_bad_sandbox_values_are_config_errors(
    workspace: Path, env: dict[str, str], text: str, field: str
) -> None:
    (workspace / "keel.toml").write_text(f"[sandbox]\n{text}\n")
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        _load(workspace, env)


def test_python_interpreter_from_keel_toml_and_the_environment(
    workspace: Path, env: dict[str, str]
) -> None:
    assert _load(workspace, env).python.interpreter is None
    (workspace / "keel.toml").write_text('[python]\ninterpreter = ".venv/bin/python"\n')
    assert _load(workspace, env).python.interpreter == ".venv/bin/python"
    env["KEEL_PYTHON_INTERPRETER"] = "/opt/py/bin/python"
    assert _load(workspace, env).python.interpreter == "/opt/py/bin/python"
    (workspace / "keel.toml").write_text('[python]\ninterpeter = "typo"\n')
    with pytest.raises(ConfigError, match=r"python\.interpeter"):
        _load(workspace, env)


def test_context_keys_reach_the_engine_settings(workspace: Path, env: dict[str, str]) -> None:
    defaults = _load(workspace, env).engine_settings(auto_approve=False)
    assert (defaults.max_prompt_tokens, defaults.instructions) == (32_000, None)
    (workspace / "keel.toml").write_text(
        '[context]\nmax_prompt_tokens = 6000\ninstructions = "./docs//agent-rules.md"\n'
    )
    settings = _load(workspace, env).engine_settings(auto_approve=False)
    assert (settings.max_prompt_tokens, settings.instructions) == (6_000, "docs/agent-rules.md")


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("max_prompt_tokens = 100", "context.max_prompt_tokens"),
        ('instructions = "/etc/passwd"', "context.instructions"),
        ('instructions = "~/.ssh/id_rsa"', "context.instructions"),
        ('instructions = "../outside.md"', "context.instructions"),
        ('instructions = ".env"', "context.instructions"),
        ("window = 3", "context.window"),
    ],
)
def test_bad_context_keys_are_config_errors(
    workspace: Path, env: dict[str, str], line: str, field: str
) -> None:
    (workspace / "keel.toml").write_text(f"[context]\n{line}\n")
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        _load(workspace, env)


def test_context_exploration_keys(workspace: Path, env: dict[str, str]) -> None:
    settings = _load(workspace, env).engine_settings(auto_approve=False)
    assert (settings.explore_turns, settings.explore_tokens) == (6, 12_000)
    (workspace / "keel.toml").write_text("[context]\nexplore_turns = 0\nexplore_tokens = 500\n")
    settings = _load(workspace, env).engine_settings(auto_approve=False)
    assert (settings.explore_turns, settings.explore_tokens) == (0, 500)
    for bad, key in (
        ("explore_turns = -1", "explore_turns"),
        ("explore_tokens = 'x'", "explore_tokens"),
    ):
        (workspace / "keel.toml").write_text(f"[context]\n{bad}\n")
        with pytest.raises(ConfigError, match=f"context.{key}:"):
            _load(workspace, env)


def test_a_resumed_session_keeps_its_exploration_budget() -> None:
    from keel.config import session_layer, validate

    layer = session_layer({"explore_turns": 2, "explore_tokens": 300})
    assert validate(layer).context.explore_turns == 2
    assert validate(session_layer({})).context.explore_turns == 6  # sessions from before


def test_the_dashboard_section_names_the_api_token_variable(
    workspace: Path, env: dict[str, str]
) -> None:
    from keel.config import user_config

    assert _load(workspace, env).dashboard.api_token_env == "KEEL_API_TOKEN"
    _user_config(env, '[dashboard]\napi_token_env = "CI_TOKEN"\n')
    assert user_config(env).dashboard.api_token_env == "CI_TOKEN"
    (workspace / "keel.toml").write_text('[dashboard]\napi_token_env = "HOME"\n')
    assert user_config(env).dashboard.api_token_env == "CI_TOKEN"  # a workspace cannot
    _user_config(env, '[dashboard]\napi_token_env = "not a name"\n')
    with pytest.raises(ConfigError, match=r"dashboard\.api_token_env"):
        user_config(env)
    _user_config(env, '[dashboard]\napi_token = "sk-in-a-file"\n')
    with pytest.raises(ConfigError, match=r"dashboard\.api_token"):
        user_config(env)
