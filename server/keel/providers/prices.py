"""Model prices, so that ``--max-cost`` and ``keel logs --stats`` mean something.

The table holds USD per million tokens (input, output). Config may override or add entries;
a model in neither costs 0 and is reported with ``priced=False`` rather than guessed, so a
budget is never silently enforced against a made-up number.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from keel.engine.models import Usage

#: USD per million (input, output) tokens. These are the providers' published list prices as
#: of writing (late 2025), without batch, cache or priority discounts; override them in config
#: (``[prices]``) when they change or when you pay something else.
PRICES: Mapping[str, tuple[float, float]] = {
    # OpenAI
    "gpt-5": (1.25, 10.00),
    "gpt-5.1": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "o1": (15.00, 60.00),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    # Anthropic
    "claude-opus-4-5": (5.00, 25.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-opus-4-0": (15.00, 75.00),
    "claude-opus-4": (15.00, 75.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-sonnet-4-0": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-5-haiku": (0.80, 4.00),
}

_PROVIDERS = ("openai-compatible", "openai", "anthropic", "replay")
# Dated snapshots and aliases cost what their family costs: gpt-4.1-2025-04-14,
# claude-sonnet-4-5-20250929, claude-3-5-haiku-latest.
_SNAPSHOT = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2}|latest)$")


def lookup(
    model: str, overrides: Mapping[str, tuple[float, float]] | None = None
) -> tuple[float, float] | None:
    """USD per million (input, output) tokens for ``model``, or ``None`` when unknown.

    ``model`` may carry a provider prefix (``openai:gpt-4.1``) and a snapshot suffix. An
    override keyed by the full name wins over one keyed by the bare model name, which wins
    over the built-in table.
    """
    extra = overrides or {}
    bare = _strip_provider(model)
    for name in dict.fromkeys((model, bare, _SNAPSHOT.sub("", bare))):
        if name in extra:
            return extra[name]
    for name in (bare, _SNAPSHOT.sub("", bare)):
        if name in PRICES:
            return PRICES[name]
    return None


def price(
    model: str,
    in_tok: int,
    out_tok: int,
    overrides: Mapping[str, tuple[float, float]] | None = None,
) -> Usage:
    """The :class:`Usage` of one call; an unknown model costs 0 with ``priced=False``."""
    rates = lookup(model, overrides)
    if rates is None:
        return Usage(input_tokens=in_tok, output_tokens=out_tok, cost_usd=0.0, priced=False)
    cost = (in_tok * rates[0] + out_tok * rates[1]) / 1_000_000
    return Usage(input_tokens=in_tok, output_tokens=out_tok, cost_usd=cost, priced=True)


def _strip_provider(model: str) -> str:
    provider, sep, rest = model.partition(":")
    return rest if sep and provider in _PROVIDERS else model
