"""The engine's vocabulary: energy, evidence, node states and the records that cross the
ports, as enums and frozen dataclasses.

The model replies (pydantic models, docs/reference/protocol.md) live in
:mod:`keel.engine.replies`, so that what only reads a session (``keel status``, ``ledger``,
``logs``: the store, the ledger and the reports import this module through
``keel.engine.ports``) never imports pydantic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from keel.engine import defaults


class Tier(StrEnum):
    """The four model roles; each can be served by its own model."""

    ARCHITECT = "architect"
    ACTUATOR = "actuator"
    VERIFIER = "verifier"
    SPECULATOR = "speculator"


class NodeKind(StrEnum):
    COMMAND = "command"
    CODE = "code"
    UNIT_TEST = "unit_test"


class NodeState(StrEnum):
    """A node's lifecycle as the store records it (docs/explanation/sessions.md)."""

    QUEUED = "queued"
    RUNNING = "running"
    VERIFYING = "verifying"
    RETRYING = "retrying"
    AWAITING_APPROVAL = "awaiting_approval"
    COMMITTED = "committed"
    FAILED = "failed"
    ESCALATED = "escalated"


#: What the editor shows for a queued node held back by a dependency awaiting approval
#: (``node_waiting``); the store keeps such a node ``queued``, so a resume runs it.
WAITING = "waiting"
#: Every state a view of a node may show: the stored ones, then ``waiting``.
SHOWN_NODE_STATES = (*(state.value for state in NodeState), WAITING)


class Component(StrEnum):
    """The five energy components, in the order of ``--energy-weights``."""

    SYN = "syn"
    STR = "str"
    LOG = "log"
    BOOT = "boot"
    SHEAF = "sheaf"


@dataclass(frozen=True)
class Residual:
    """One piece of evidence that the node is not yet right.

    ``magnitude`` is squared and weighted by its component's weight. ``source`` names the
    sensor ("ty", "pytest", "ownership", "command", ...); the optional fields locate it.
    ``baseline`` is the commit at which the same residual was already present before the
    session (docs/explanation/energy.md): it is shown, but does not count toward V.
    """

    component: Component
    message: str
    source: str
    magnitude: float = 1.0
    path: str | None = None
    line: int | None = None
    test_id: str | None = None
    command: str | None = None
    exit_code: int | None = None
    baseline: str | None = None

    def describe(self) -> str:
        """One line for prompts, hovers and logs, quoting the evidence."""
        where = ""
        if self.path:
            where = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        if self.test_id:
            where = f"{self.test_id}: "
        if self.command is not None:
            where = f"`{self.command}` exited {self.exit_code}: "
        already = f" (already failing at {self.baseline[:12]})" if self.baseline else ""
        return f"[{self.source}] {where}{self.message}{already}"


@dataclass(frozen=True)
class SensorReport:
    """What one sensor (checker, test runner, command, contract check) saw.

    ``degraded`` means the sensor could not measure (tool missing, crashed, timed out); its
    residuals then include one that says so, so a node is never called stable on missing
    evidence.
    """

    sensor: str
    residuals: tuple[Residual, ...] = ()
    degraded: bool = False
    detail: str = ""


@dataclass(frozen=True)
class EnergyWeights:
    syn: float = defaults.WEIGHTS[0]
    str: float = defaults.WEIGHTS[1]
    log: float = defaults.WEIGHTS[2]
    boot: float = defaults.WEIGHTS[3]
    sheaf: float = defaults.WEIGHTS[4]

    def of(self, component: Component) -> float:
        return float(getattr(self, component.value))


@dataclass(frozen=True)
class Energy:
    """V(x) and its components, with the evidence behind every non-zero one."""

    components: dict[Component, float]
    evidence: tuple[Residual, ...] = ()
    degraded_sensors: tuple[str, ...] = ()

    @property
    def total(self) -> float:
        return sum(self.components.values())

    def stable(self, epsilon: float) -> bool:
        return self.total < epsilon and not self.degraded_sensors

    def as_dict(self) -> dict[str, float]:
        out = {f"v_{c.value}": round(self.components.get(c, 0.0), 6) for c in Component}
        out["v"] = round(self.total, 6)
        return out


@dataclass(frozen=True)
class CommandResult:
    """The outcome of one command run in a sandbox."""

    command: str
    exit_code: int
    output: str
    timed_out: bool = False
    truncated: bool = False
    refused: str | None = None  # set when policy did not allow the command to run

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.refused is None


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    priced: bool = True


@dataclass(frozen=True)
class LedgerEntry:
    """One approval commit, read back from git."""

    sha: str
    title: str
    session: str
    node: str
    bundle: str
    energy: str
    approved_by: str
    timestamp: str
    files: tuple[str, ...] = field(default_factory=tuple)
    reverts: str | None = None
