"""Every default of the engine's knobs, written once.

``keel.config`` (the ``keel.toml`` schema), :class:`~keel.engine.settings.EngineSettings`,
:class:`~keel.engine.models.EnergyWeights`, the reports and the language server's views all
read them from here, so a default cannot differ between the terminal and the editor. The
values are documented in docs/reference/configuration.md.
"""

from __future__ import annotations

from typing import Final

#: A node is stable when its energy V(x) is below epsilon (``stability_threshold``).
EPSILON: Final = 0.1
#: The energy weights (alpha, beta, gamma, delta, sigma) of V_syn, V_str, V_log, V_boot and
#: V_sheaf, in component order (``energy_weights``).
WEIGHTS: Final = (1.0, 0.5, 2.0, 1.0, 1.0)
#: Approval policy (``mode``) and balanced mode's complexity threshold K.
MODE: Final = "balanced"
COMPLEXITY_K: Final = 3
#: Attempts per node before it escalates.
MAX_ATTEMPTS: Final = 3
#: Seconds a verification command may run.
COMMAND_TIMEOUT_S: Final = 120.0
#: Model calls a session may make (``[budget] max_steps``).
MAX_STEPS: Final = 100
#: The architect's exploration: replies that may call tools, and tokens of results in all.
EXPLORE_TURNS: Final = 6
EXPLORE_TOKENS: Final = 12_000
#: The repository map's budget and the bound on every prompt (tokens = characters / 4).
MAP_TOKENS: Final = 4000
MAX_PROMPT_TOKENS: Final = 32_000
#: A model request's timeout, its retries and the first retry's back-off (``[network]``).
NETWORK_TIMEOUT_S: Final = 120.0
MAX_RETRIES: Final = 3
RETRY_BASE_DELAY_S: Final = 0.5
