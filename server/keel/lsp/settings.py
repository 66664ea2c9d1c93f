"""Settings in the editor: the keys of ``keel.toml``, from ``initializationOptions`` and the
``keel`` section of ``workspace/configuration``.

Sources, later wins (docs/reference/configuration.md): built-in defaults <
``~/.config/keel/config.toml`` < ``<workspace>/keel.toml`` < environment < the editor's
settings. Every value is validated by :func:`keel.config.validate`, the same function the
command line uses. An invalid value never stops the server: it is dropped (that key keeps
its default or file value) and reported, one message per problem, so the user can fix it.
Top-level keys Keel does not know (an extension's own settings such as ``trace``) are
ignored rather than reported.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.config import (
    KeelConfig,
    env_layer,
    merge,
    read_toml,
    user_config_path,
    validate,
)
from keel.engine.ports import ConfigError

SECTIONS = frozenset(KeelConfig.model_fields)


@dataclass
class Resolved:
    """The configuration to run with and the problems found on the way."""

    config: KeelConfig
    problems: list[str] = field(default_factory=list)


def file_layers(workspace: Path | None, env: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Config files and environment, merged; a broken file is reported and skipped."""
    merged: dict[str, Any] = {}
    problems: list[str] = []
    paths = [user_config_path(env)] + ([workspace / "keel.toml"] if workspace else [])
    for path in paths:
        try:
            merged = merge(merged, read_toml(path))
        except ConfigError as exc:
            problems.append(str(exc))
    return merge(merged, env_layer(env)), problems


def _leaves(
    layer: Mapping[str, Any], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    for key, value in layer.items():
        path = (*prefix, str(key))
        # Tables of named entries (providers, prices) are validated per entry, not per key.
        if isinstance(value, Mapping) and value and len(path) < 2:
            yield from _leaves(value, path)
        else:
            yield path, value


def _nest(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {path[-1]: value}
    for key in reversed(path[:-1]):
        out = {key: out}
    return out


def resolve(
    workspace: Path | None, env: Mapping[str, str], *layers: Mapping[str, Any] | None
) -> Resolved:
    """Validate the editor's ``layers`` (later wins) over the files; drop what is invalid."""
    base, problems = file_layers(workspace, env)
    try:
        config = validate(base)
    except ConfigError as exc:
        problems.append(f"{exc} (in keel.toml or the environment); using the defaults")
        base, config = {}, validate({})
    good = base
    for layer in layers:
        if layer is None:
            continue
        if not isinstance(layer, Mapping):
            problems.append(f"Keel settings must be an object, got {type(layer).__name__}")
            continue
        for path, value in _leaves({k: v for k, v in layer.items() if k in SECTIONS}):
            candidate = merge(good, _nest(path, value))
            try:
                config = validate(candidate)
            except ConfigError as exc:
                problems.append(f"setting {'.'.join(path)} = {value!r} ignored: {exc}")
                continue
            good = candidate
    return Resolved(config, problems)
