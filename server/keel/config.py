"""Configuration: built-in defaults < ~/.config/keel/config.toml < <workspace>/keel.toml <
environment < command-line flags (docs/reference/configuration.md).

Each layer is a plain nested dict; they are merged in order and validated once with pydantic,
so an invalid value anywhere is one clear :class:`ConfigError` (exit status 2). Secrets never
come from files: only the *name* of the variable holding a key may be configured.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from keel.bundles.paths import PathError
from keel.engine import defaults
from keel.engine.energy import weights_from
from keel.engine.gateway import Budget
from keel.engine.instructions import instruction_path
from keel.engine.models import Tier
from keel.engine.ports import ConfigError
from keel.engine.settings import EngineSettings


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelsConfig(_Section):
    default: str = "openai:gpt-4.1"
    architect: str | None = None
    actuator: str | None = None
    verifier: str | None = None
    speculator: str | None = None

    def for_tier(self, tier: Tier) -> str:
        return getattr(self, tier.value) or self.default


class ProviderConfig(_Section):
    base_url: str | None = None
    api_key_env: str | None = None
    #: How ``openai-compatible`` asks for structured replies (docs/how-to/use-a-local-model.md):
    #: ``auto`` tries json_schema, then json_object, tools and prompt, and remembers what works.
    structured: Literal["auto", "json_schema", "json_object", "tools", "prompt"] = "auto"


class MaxTokensConfig(_Section):
    """``[max_tokens]``: the most tokens one reply of each tier may have, sent on every
    request so that no reply can run away (a small model can loop until its context fills)."""

    architect: int = Field(default=4096, ge=256, le=200_000)
    actuator: int = Field(default=16_384, ge=256, le=200_000)
    verifier: int = Field(default=2048, ge=256, le=200_000)
    speculator: int = Field(default=2048, ge=256, le=200_000)

    def per_tier(self) -> dict[Tier, int]:
        return {tier: int(getattr(self, tier.value)) for tier in Tier}


class EngineConfig(_Section):
    mode: Literal["cautious", "balanced", "yolo"] = defaults.MODE
    complexity_k: int = Field(default=defaults.COMPLEXITY_K, ge=0)
    energy_weights: list[float] = Field(default_factory=lambda: list(defaults.WEIGHTS))
    stability_threshold: float = Field(default=defaults.EPSILON, gt=0)
    max_attempts: int = Field(default=defaults.MAX_ATTEMPTS, ge=1, le=20)
    defer_tests: bool = False
    adopt_new_files: bool = False
    command_timeout_s: float = Field(default=defaults.COMMAND_TIMEOUT_S, gt=0)
    speculate: bool = True

    @field_validator("energy_weights")
    @classmethod
    def _weights(cls, value: list[float]) -> list[float]:
        weights_from(value)  # raises ValueError with the reason
        return value


class BudgetConfig(_Section):
    max_cost: float | None = Field(default=None, ge=0)
    max_steps: int | None = Field(default=defaults.MAX_STEPS, ge=1)


class NetworkConfig(_Section):
    timeout_s: float = Field(default=defaults.NETWORK_TIMEOUT_S, gt=0)
    max_retries: int = Field(default=defaults.MAX_RETRIES, ge=0)
    retry_base_delay_s: float = Field(default=defaults.RETRY_BASE_DELAY_S, ge=0)


class SandboxConfig(_Section):
    """``[sandbox]``: how the processes that run project or model code are confined."""

    mode: Literal["auto", "off"] = "auto"
    network: bool = False
    memory_mb: int = Field(default=8192, ge=0)
    readonly_paths: list[str] = Field(default_factory=list)

    @field_validator("readonly_paths")
    @classmethod
    def _absolute(cls, value: list[str]) -> list[str]:
        relative = [p for p in value if not Path(p).expanduser().is_absolute()]
        if relative:
            raise ValueError(f"paths must be absolute: {', '.join(relative)}")
        return value


class PythonConfig(_Section):
    #: The project's interpreter (absolute, or relative to the workspace; a virtual
    #: environment's directory also works). None: detected (docs/reference/configuration.md).
    interpreter: str | None = None


class CommandsConfig(_Section):
    """``[commands]``: how verification commands share the CPU with Keel (checkers, test runs,
    the plan's commands; docs/reference/configuration.md)."""

    niceness: int = Field(default=10, ge=0, le=19)
    start_interval_ms: int = Field(default=20, ge=0, le=1000)


class ContextConfig(_Section):
    """What the models see of the workspace (docs/explanation/context.md)."""

    map_tokens: int = Field(default=defaults.MAP_TOKENS, ge=0, le=200_000)
    explore_turns: int = Field(default=defaults.EXPLORE_TURNS, ge=0, le=50)
    explore_tokens: int = Field(default=defaults.EXPLORE_TOKENS, ge=0, le=200_000)
    max_prompt_tokens: int = Field(default=defaults.MAX_PROMPT_TOKENS, ge=2_000)
    instructions: str | None = None

    @field_validator("instructions")
    @classmethod
    def _instructions(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return instruction_path(value)
        except PathError as exc:
            raise ValueError(str(exc)) from exc


class DashboardConfig(_Section):
    """``[dashboard]``: where ``keel dashboard`` listens and its password
    (docs/how-to/dashboard.md). Prefer ``password_env`` (the name of a variable holding it):
    a password written in a file is readable by whoever can read the file. Its ``/api/v1``
    execution API (docs/reference/api.md) is served only while the variable that
    ``api_token_env`` names holds a token: only the name is configured, never the token."""

    host: str = "127.0.0.1"
    port: int = Field(default=3000, ge=0, le=65535)
    password: str | None = Field(default=None, min_length=1)
    password_env: str | None = Field(default=None, min_length=1)
    api_token_env: str = Field(default="KEEL_API_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    def resolve_password(self, env: Mapping[str, str]) -> str | None:
        """The password: ``password_env``'s variable first, then ``password``; a named
        variable that is unset or empty is an error, never a dashboard without a password."""
        if self.password_env:
            value = env.get(self.password_env)
            if not value:
                raise ConfigError(
                    f"[dashboard] password_env names {self.password_env}, which is not set"
                )
            return value
        return self.password


class KeelConfig(_Section):
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    context: ContextConfig = Field(default_factory=ContextConfig)
    prices: dict[str, tuple[float, float]] = Field(default_factory=dict)
    log_llm: bool = False
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    python: PythonConfig = Field(default_factory=PythonConfig)
    commands: CommandsConfig = Field(default_factory=CommandsConfig)
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)

    @field_validator("providers")
    @classmethod
    def _structured_only_where_negotiated(
        cls, value: dict[str, ProviderConfig]
    ) -> dict[str, ProviderConfig]:
        """``structured`` set for a provider that does not read it would be a setting that
        does nothing: only ``openai-compatible`` negotiates how it is asked for JSON."""
        for name, provider in value.items():
            if name != "openai-compatible" and "structured" in provider.model_fields_set:
                raise ValueError(
                    f"[providers.{name}] structured: only openai-compatible servers negotiate "
                    "structured output; the openai and anthropic APIs always take the schema"
                )
        return value

    max_tokens: MaxTokensConfig = Field(default_factory=MaxTokensConfig)

    def engine_settings(self, *, auto_approve: bool) -> EngineSettings:
        e = self.engine
        return EngineSettings(
            weights=weights_from(e.energy_weights),
            epsilon=e.stability_threshold,
            max_attempts=e.max_attempts,
            mode=e.mode,
            complexity_k=e.complexity_k,
            auto_approve=auto_approve,
            defer_tests=e.defer_tests,
            adopt_new_files=e.adopt_new_files,
            budget=Budget(self.budget.max_cost, self.budget.max_steps),
            log_llm=self.log_llm,
            command_timeout_s=e.command_timeout_s,
            speculate=e.speculate,
            explore_turns=self.context.explore_turns,
            explore_tokens=self.context.explore_tokens,
            map_tokens=self.context.map_tokens,
            max_prompt_tokens=self.context.max_prompt_tokens,
            instructions=self.context.instructions,
            max_reply_tokens=self.max_tokens.per_tier(),
        )


def merge(base: dict[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``layer`` over ``base`` (tables merge, other values replace)."""
    out = dict(base)
    for key, value in layer.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def user_config_path(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", str(Path.home()))) / ".config")
    return Path(base) / "keel" / "config.toml"


_ENV_KEYS: dict[str, tuple[str, ...]] = {
    "KEEL_MODEL": ("models", "default"),
    "KEEL_ARCHITECT_MODEL": ("models", "architect"),
    "KEEL_ACTUATOR_MODEL": ("models", "actuator"),
    "KEEL_VERIFIER_MODEL": ("models", "verifier"),
    "KEEL_SPECULATOR_MODEL": ("models", "speculator"),
    "KEEL_MODE": ("engine", "mode"),
    "KEEL_COMPLEXITY_K": ("engine", "complexity_k"),
    "KEEL_ENERGY_WEIGHTS": ("engine", "energy_weights"),
    "KEEL_STABILITY_THRESHOLD": ("engine", "stability_threshold"),
    "KEEL_MAX_ATTEMPTS": ("engine", "max_attempts"),
    "KEEL_DEFER_TESTS": ("engine", "defer_tests"),
    "KEEL_MAX_COST": ("budget", "max_cost"),
    "KEEL_MAX_STEPS": ("budget", "max_steps"),
    "KEEL_SANDBOX": ("sandbox", "mode"),
    "KEEL_SANDBOX_NETWORK": ("sandbox", "network"),
    "KEEL_PYTHON_INTERPRETER": ("python", "interpreter"),
    "KEEL_MAP_TOKENS": ("context", "map_tokens"),
}


def env_layer(env: Mapping[str, str]) -> dict[str, Any]:
    """``KEEL_*`` variables as a config layer (pydantic coerces the strings)."""
    layer: dict[str, Any] = {}
    for name, (section, key) in _ENV_KEYS.items():
        if env.get(name):
            value: Any = env[name]
            if key == "energy_weights":
                value = [part.strip() for part in value.split(",")]
            layer.setdefault(section, {})[key] = value
    return layer


def flags_layer(flags: Mapping[str, Any]) -> dict[str, Any]:
    """Command-line flags (or LSP settings) as a layer; ``None`` means "not given".

    ``--model`` is "one model for every tier not named separately", so it also clears tier
    models set by lower layers unless the same command line names them.
    """
    layer: dict[str, Any] = {}
    models: dict[str, Any] = {}
    if flags.get("model"):
        models = {"default": flags["model"], **{tier.value: None for tier in Tier}}
    for tier in Tier:
        if flags.get(f"{tier.value}_model"):
            models[tier.value] = flags[f"{tier.value}_model"]
    if models:
        layer["models"] = models
    engine = {
        key: flags[key]
        for key in ("mode", "complexity_k", "max_attempts")
        if flags.get(key) is not None
    }
    if flags.get("energy_weights") is not None:
        engine["energy_weights"] = [p.strip() for p in str(flags["energy_weights"]).split(",")]
    if flags.get("stability_threshold") is not None:
        engine["stability_threshold"] = flags["stability_threshold"]
    if flags.get("defer_tests"):
        engine["defer_tests"] = True
    if engine:
        layer["engine"] = engine
    budget = {key: flags[key] for key in ("max_cost", "max_steps") if flags.get(key) is not None}
    if budget:
        layer["budget"] = budget
    if flags.get("sandbox_mode") is not None:
        layer["sandbox"] = {"mode": flags["sandbox_mode"]}
    if flags.get("log_llm"):
        layer["log_llm"] = True
    return layer


def load_config(
    workspace: Path,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    session: Mapping[str, Any] | None = None,
) -> KeelConfig:
    """Resolve every layer into one validated configuration.

    ``session`` is a stored session's own configuration (``keel resume``): it sits above the
    files and the environment, so a resumed session keeps its models, weights, epsilon, mode
    and budgets, and only the flags given to ``resume`` change them.
    """
    env = os.environ if env is None else env
    layers = [read_toml(user_config_path(env)), read_toml(workspace / "keel.toml"), env_layer(env)]
    if session is not None:
        layers.append(session_layer(session))
    layers.append(flags_layer(flags or {}))
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = merge(merged, layer)
    return validate(merged)


def session_layer(record: Mapping[str, Any]) -> dict[str, Any]:
    """A session's stored configuration (``Engine.config_record``) as a layer."""
    models = dict(record.get("models") or {})
    layer: dict[str, Any] = {
        "models": {"default": models.get("actuator", ModelsConfig().default), **models},
        "engine": {
            key: record[key]
            for key in ("mode", "complexity_k", "max_attempts", "defer_tests", "adopt_new_files")
            if record.get(key) is not None
        },
        "budget": {"max_cost": record.get("max_cost"), "max_steps": record.get("max_steps")},
        "log_llm": bool(record.get("log_llm", False)),
    }
    explore = {k: record[k] for k in ("explore_turns", "explore_tokens") if k in record}
    if explore:
        layer["context"] = explore
    if record.get("epsilon") is not None:
        layer["engine"]["stability_threshold"] = record["epsilon"]
    if record.get("weights") is not None:
        layer["engine"]["energy_weights"] = list(record["weights"])
    return layer


def validate(data: Mapping[str, Any]) -> KeelConfig:
    try:
        return KeelConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from exc


def user_config(env: Mapping[str, str] | None = None) -> KeelConfig:
    """The user's own configuration (``~/.config/keel/config.toml`` and ``KEEL_*``), no
    workspace's ``keel.toml``: what a server serving many workspaces (the API's token
    variable) must not let one workspace decide."""
    env = os.environ if env is None else env
    return validate(merge(read_toml(user_config_path(env)), env_layer(env)))
