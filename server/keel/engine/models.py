"""The engine's vocabulary: model replies (docs/reference/protocol.md), energy, evidence and
node states.

Replies are pydantic models with ``extra="forbid"`` so that a misspelt key ("write" for
"writes") is a schema violation fed back to the model, never silently dropped content.
Everything else is a frozen dataclass: plain records that cross the ports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from keel.bundles.model import ArtifactBundle as ArtifactBundle
from keel.bundles.model import FileDiff as FileDiff
from keel.bundles.model import FileWrite as FileWrite
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


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class NodeContract(_Reply):
    symbols: list[str] = Field(
        default_factory=list,
        description="the function, class or constant names the node's files must define "
        'at top level, e.g. ["circle_area"] for circle_area(radius); never a parameter '
        "such as radius, nor a local variable",
    )
    forbidden: list[str] = Field(
        default_factory=list,
        description='text that must not appear in the node\'s files (e.g. "TODO")',
    )


class PlanNode(_Reply):
    id: str = Field(min_length=1, description="a short unique name: letters, digits, - or _")
    title: str = Field(min_length=1, description="one line saying what the node does")
    kind: NodeKind = Field(
        description='"code" (writes source files), "unit_test" (writes test files) or '
        '"command" (project set-up checked by commands)'
    )
    owns: list[str] = Field(
        default_factory=list,
        description="the files this node creates or edits (workspace-relative, '/' "
        "separators); every code and unit_test node owns at least one file and no file has "
        "two owners",
    )
    context: list[str] = Field(
        default_factory=list,
        description="files the node reads but does not write (a test node lists the files "
        "it tests)",
    )
    depends_on: list[str] = Field(
        default_factory=list,
        description="ids of the nodes whose files this node needs; a unit_test node depends "
        "on the nodes it tests",
    )
    commands: list[str] = Field(
        default_factory=list,
        description='shell commands that check the node (e.g. "python -m pytest -q '
        "test_x.py\"); they must really run the node's tests",
    )
    contract: NodeContract = Field(
        default_factory=NodeContract,
        description="what the node's files must and must not contain",
    )


class TaskPlan(_Reply):
    nodes: list[PlanNode] = Field(
        min_length=1, description="the steps of the plan, at least one; keep it small"
    )


class VerifierReport(_Reply):
    verdict: Literal["stable", "unstable"] = Field(
        description='"unstable" when the evidence shows a problem (almost always), else "stable"'
    )
    analysis: str = Field(description="the root cause of the evidence, in a few sentences")
    fix_hints: list[str] = Field(
        default_factory=list, description="concrete changes that would fix it, one per item"
    )


class SpeculationHint(_Reply):
    node: str = Field(description="the id of the plan node the note is for")
    note: str = Field(description="an interface detail, pitfall or edge case to keep in mind")


class Speculation(_Reply):
    hints: list[SpeculationHint] = Field(
        default_factory=list, description="notes for the nodes likely to go wrong (may be empty)"
    )


class Citation(_Reply):
    """A place in the workspace an explanation rests on: ``path`` (workspace-relative) and
    ``line`` (1-based)."""

    path: str = Field(min_length=1, description="a workspace-relative path you were shown")
    line: int = Field(ge=1, description="a 1-based line number in that file")


class Explanation(_Reply):
    """``keel explain``'s reply: the answer (Markdown) and the places it cites."""

    answer: str = Field(min_length=1, description="the answer, in Markdown")
    citations: list[Citation] = Field(
        default_factory=list, description="the places the answer rests on"
    )


#: The structured-output name of each reply schema (docs/reference/protocol.md).
SCHEMA_NAMES: dict[type[BaseModel], str] = {
    TaskPlan: "task_plan",
    ArtifactBundle: "artifact_bundle",
    VerifierReport: "verifier_report",
    Speculation: "speculation",
    Explanation: "explanation",
}


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
