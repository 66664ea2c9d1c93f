"""What the session store holds, as typed records (docs/explanation/architecture.md).

The store (``keel.store``) writes and reads these; the engine, the CLI's reports, replay and
the language server read their fields by name instead of indexing rows. They live in the
engine, beside the ports, because the :class:`~keel.engine.ports.SessionStore` port names
them and the engine imports no adapter.

Free JSON is kept only where the value really is free: a plan, a bundle, a configuration,
an event's payload, a step's intent and result are each their own schema (checked where
they are made) and the store keeps them whole; those fields are :data:`JsonObject`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

#: A JSON object the store keeps whole (a plan, a bundle, an event, a step's result).
JsonObject: TypeAlias = Mapping[str, Any]


@dataclass(frozen=True)
class SessionRecord:
    """One session: its task, the configuration it ran with, and how it ended."""

    id: str
    task: str
    config: JsonObject
    started_at: str
    finished_at: str | None = None
    outcome: str | None = None
    totals: JsonObject | None = None

    @property
    def reason(self) -> str:
        """Why the session stopped (``""`` while it runs or when it succeeded)."""
        return str((self.totals or {}).get("reason", ""))


@dataclass(frozen=True)
class PlanRecord:
    """A session's plan (the architect's ``task_plan``), as stored."""

    id: int
    plan: JsonObject
    created_at: str


@dataclass(frozen=True)
class NodeRecord:
    """A planned node and its current state (a :class:`~keel.engine.models.NodeState` value)."""

    node_id: str
    title: str
    kind: str
    state: str
    updated_at: str


@dataclass(frozen=True)
class TransitionRecord:
    """One change of a node's state, with the reason (a ledger sha, a budget stop)."""

    id: int
    node_id: str
    state: str
    detail: str
    at: str


@dataclass(frozen=True)
class AttemptRecord:
    """One verified attempt: the bundle, its energy (component to value) and the evidence."""

    node_id: str
    attempt: int
    bundle: JsonObject | None
    energy: Mapping[str, float]
    evidence: Sequence[JsonObject]
    stable: bool
    at: str = ""


@dataclass(frozen=True)
class ModelCall:
    """One model call, successful or not; ``id`` and ``at`` are the store's (unset before
    it is recorded). ``prompt`` and ``response`` are kept only with ``--log-llm``;
    ``prompt_chars`` and ``reply_chars`` are None in calls recorded before sizes were."""

    tier: str
    model: str
    node_id: str | None = None
    attempt: int | None = None
    schema_name: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    priced: bool = True
    latency_s: float = 0.0
    ok: bool = False
    error: str | None = None
    prompt: str | None = None
    response: str | None = None
    prompt_chars: int | None = None
    reply_chars: int | None = None
    id: int | None = None
    at: str = ""


#: How an approval of some hunks names them in its note: ``hunks <id>, <id>``.
HUNKS_NOTE = "hunks "


def hunks_note(ids: Sequence[str]) -> str:
    """The note of an approval of some hunks (:attr:`ApprovalRecord.hunks` reads it back)."""
    return HUNKS_NOTE + ", ".join(ids)


@dataclass(frozen=True)
class ApprovalRecord:
    """A decision about a node's bundle (``approved``, ``rejected``, ``refused``).

    An approval is recorded before its commit (``ledger_sha`` None) with the ``bundle_id``
    it approves and the part chosen, when only a part was: the ``files`` (None: all of them)
    or the hunks its ``note`` names. The commit adds the sha.
    """

    id: int
    node_id: str
    decision: str
    actor: str
    ledger_sha: str | None
    note: str = ""
    bundle_id: str | None = None
    files: Sequence[str] | None = None
    at: str = ""

    @property
    def hunks(self) -> list[str] | None:
        """The hunk ids an approval of some hunks names, else ``None``."""
        if not self.note.startswith(HUNKS_NOTE):
            return None
        ids = [i for i in self.note[len(HUNKS_NOTE) :].split(", ") if i]
        return ids or None

    @property
    def partial(self) -> bool:
        """An approval of part of its bundle: once committed, the node still has the rest
        to propose, so that commit does not finish the node."""
        return self.files is not None or self.hunks is not None


@dataclass(frozen=True)
class EscalationRecord:
    """A node that did not reach V < epsilon: the report sent with ``node_escalated``."""

    id: int
    node_id: str
    report: JsonObject
    at: str


@dataclass(frozen=True)
class EventRecord:
    """One engine event as it was emitted (``payload`` is the whole ``--json`` object)."""

    id: int
    type: str
    payload: JsonObject
    at: str


@dataclass(frozen=True)
class StepRecord:
    """A side-effecting step: its intent (before it ran) and result (None: it never ended)."""

    step_id: str
    kind: str
    intent: JsonObject
    result: JsonObject | None
    intent_at: str
    result_at: str | None = None


@dataclass(frozen=True)
class StructuredModeRecord:
    """The structured-output mode an endpoint's model was last found to take."""

    endpoint: str
    model: str
    mode: str
    updated_at: str


@dataclass(frozen=True)
class RunRecord:
    """A process that drove the session (``keel abort`` signals the live ones)."""

    id: int
    pid: int
    host: str
    started_at: str
    ended_at: str | None = None
    abort_requested: bool = False


@dataclass(frozen=True)
class CallTotals:
    """What a session's model calls have spent so far (a resumed session keeps one account)."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    largest_call_usd: float = 0.0
    unpriced: int = 0


__all__ = [
    "ApprovalRecord",
    "AttemptRecord",
    "CallTotals",
    "EscalationRecord",
    "EventRecord",
    "JsonObject",
    "ModelCall",
    "NodeRecord",
    "PlanRecord",
    "RunRecord",
    "SessionRecord",
    "StepRecord",
    "TransitionRecord",
]
