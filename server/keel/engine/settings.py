"""The engine's knobs for one session, resolved from config files, environment and flags."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from keel.engine import defaults
from keel.engine.gateway import Budget
from keel.engine.models import EnergyWeights, Tier

MODES = ("cautious", "balanced", "yolo")


@dataclass(frozen=True)
class EngineSettings:
    """Everything that changes how a session runs; stored with the session for resume."""

    weights: EnergyWeights = field(default_factory=EnergyWeights)
    epsilon: float = defaults.EPSILON
    max_attempts: int = defaults.MAX_ATTEMPTS
    mode: str = defaults.MODE
    complexity_k: int = defaults.COMPLEXITY_K
    auto_approve: bool = False
    defer_tests: bool = False
    #: ``[engine] adopt_new_files``: a bundle may create a file no node owns, which becomes
    #: its node's (docs/explanation/plan-repair.md); off, such a write is outside ``owns``.
    adopt_new_files: bool = False
    budget: Budget = field(default_factory=Budget)
    log_llm: bool = False
    command_timeout_s: float = defaults.COMMAND_TIMEOUT_S
    speculate: bool = True
    #: The architect's read-only exploration before it plans: replies that may call tools
    #: (0: none) and tokens of tool results in all.
    explore_turns: int = defaults.EXPLORE_TURNS
    explore_tokens: int = defaults.EXPLORE_TOKENS
    #: The architect's repository map budget (``[context] map_tokens``; tokens = chars / 4).
    map_tokens: int = defaults.MAP_TOKENS
    #: ``[context] max_prompt_tokens``: every prompt of every tier fits it (chars / 4).
    max_prompt_tokens: int = defaults.MAX_PROMPT_TOKENS
    #: ``[context] instructions``: Keel's instructions file (None: ``.keel/instructions.md``).
    instructions: str | None = None
    #: ``[max_tokens]``: the most tokens one reply of each tier may have (absent: unbounded).
    max_reply_tokens: Mapping[Tier, int] = field(default_factory=dict)

    def needs_approval(self, complexity: int) -> bool:
        """cautious: every node; balanced: nodes whose complexity exceeds K; yolo: none."""
        if self.mode == "cautious":
            return True
        if self.mode == "balanced":
            return complexity > self.complexity_k
        return False
