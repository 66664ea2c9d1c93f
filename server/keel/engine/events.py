"""The session's event stream: one typed record per kind, stamped, stored, then sent to the sink.

Every event is a frozen record (:class:`Event` subclass) that knows its :class:`EventKind` and
serialises (:meth:`Event.to_json`) to the JSON object ``keel agent --json`` prints and the
store keeps (docs/reference/events.md): ``ts``, ``session``, ``type``, then the record's fields
in order. :func:`parse_event` turns such an object (read back from the store) into its record
and rejects an unknown kind, a missing or extra key or a value of the wrong type clearly.

Events quote evidence (command output, file content), so they are redacted once here, before
they reach the store or the sink: ``--json`` output is often kept as a CI log.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Union, get_args, get_origin, get_type_hints

from keel.engine.models import Energy
from keel.engine.ports import KeelError
from keel.engine.records import JsonObject
from keel.engine.redaction import redact

if TYPE_CHECKING:
    from keel.engine.ports import EventSink, SessionRecords


class EventKind(StrEnum):
    """Every event's ``type``, in the order a session emits them."""

    SESSION_STARTED = "session_started"
    SESSION_RESUMED = "session_resumed"
    PLAN_INVALID = "plan_invalid"
    PLAN_FAILED = "plan_failed"
    PLAN_REPAIRED = "plan_repaired"
    EXPLORE = "explore"
    PLAN_READY = "plan_ready"
    BASELINE = "baseline"
    WARNING = "warning"
    NODE_STARTED = "node_started"
    BUNDLE_GENERATED = "bundle_generated"
    FILE_ADOPTED = "file_adopted"
    VERIFICATION = "verification"
    NODE_RETRYING = "node_retrying"
    AWAITING_APPROVAL = "awaiting_approval"
    BUNDLE_REJECTED = "bundle_rejected"
    BUNDLE_EDITED = "bundle_edited"
    BUNDLE_REBASED = "bundle_rebased"
    BUNDLE_PARTIALLY_COMMITTED = "bundle_partially_committed"
    HUNKS_VERIFIED = "hunks_verified"
    HUNKS_REJECTED = "hunks_rejected"
    NODE_COMMITTED = "node_committed"
    LEDGER_REFUSED = "ledger_refused"
    NODE_ESCALATED = "node_escalated"
    NODE_FAILED = "node_failed"
    NODE_WAITING = "node_waiting"
    NODES_REOPENED = "nodes_reopened"
    BUDGET_EXCEEDED = "budget_exceeded"
    SESSION_FINISHED = "session_finished"


class EventError(KeelError):
    """A stored or received event that is not one of the records below."""


_OMIT = "omit_when_default"


def _optional(default: Any) -> Any:
    """A field left out of the JSON while it holds ``default`` (e.g. ``recovered``)."""
    return field(default=default, metadata={_OMIT: True})


@dataclass(frozen=True, kw_only=True)
class Event:
    """One event; ``ts`` and ``session`` are stamped by :class:`EventLog` when it is emitted.

    An event sent only to the sink (``plan_invalid``) carries neither, as it always has.
    """

    type: ClassVar[EventKind]
    ts: str | None = _optional(None)
    session: str | None = _optional(None)

    def to_json(self) -> dict[str, object]:
        """The JSON object printed by ``--json`` and stored: stamps, ``type``, then fields."""
        out: dict[str, object] = {}
        if self.ts is not None:
            out["ts"] = self.ts
        if self.session is not None:
            out["session"] = self.session
        out["type"] = self.type.value
        for f in dataclasses.fields(self)[2:]:
            value = getattr(self, f.name)
            if not (f.metadata.get(_OMIT) and value == f.default):
                out[f.name] = _plain(value)
        return out

    def stamped(self, ts: str, session: str) -> Event:
        return dataclasses.replace(self, ts=ts, session=session)

    @property
    def node_id(self) -> str | None:
        """The node the event is about (its ``node``), None for a session-wide one."""
        node = getattr(self, "node", None)
        return node if isinstance(node, str) else None


@dataclass(frozen=True)
class PlannedNode:
    """One node as ``plan_ready`` lists it."""

    id: str
    title: str
    kind: str
    owns: Sequence[str]
    depends_on: Sequence[str]


@dataclass(frozen=True)
class SessionTotals:
    """What a session spent and reached, as ``session_finished`` reports it."""

    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    unpriced: int
    wall_time_s: float
    nodes: int
    committed: int


@dataclass(frozen=True, kw_only=True)
class _SessionOpened(Event):
    """What ``session_started`` and ``session_resumed`` both carry."""

    task: str
    workspace: str
    models: Mapping[str, str]
    plugins: Sequence[str]
    mode: str
    epsilon: float
    sandbox: JsonObject
    environment: JsonObject
    instructions: Sequence[str]


@dataclass(frozen=True, kw_only=True)
class SessionStarted(_SessionOpened):
    type = EventKind.SESSION_STARTED


@dataclass(frozen=True, kw_only=True)
class SessionResumed(_SessionOpened):
    """A run of ``keel resume``: the stored session continues."""

    type = EventKind.SESSION_RESUMED


@dataclass(frozen=True, kw_only=True)
class PlanInvalid(Event):
    type = EventKind.PLAN_INVALID
    attempt: int
    errors: Sequence[str]


@dataclass(frozen=True, kw_only=True)
class PlanFailed(Event):
    type = EventKind.PLAN_FAILED
    reason: str


@dataclass(frozen=True, kw_only=True)
class PlanRepaired(Event):
    """Keel fixed mistakes of the architect's plan that have one obvious fix
    (:mod:`keel.engine.repair`); one sentence per repair."""

    type = EventKind.PLAN_REPAIRED
    attempt: int
    repairs: Sequence[str]


@dataclass(frozen=True, kw_only=True)
class FileAdopted(Event):
    """A node's bundle created a file no node owns: the node owns it from now on."""

    type = EventKind.FILE_ADOPTED
    node: str
    attempt: int
    path: str


@dataclass(frozen=True, kw_only=True)
class Explore(Event):
    type = EventKind.EXPLORE
    tool: str
    arguments: JsonObject
    chars: int
    refused: bool
    tier: str


@dataclass(frozen=True, kw_only=True)
class PlanReady(Event):
    type = EventKind.PLAN_READY
    nodes: Sequence[PlannedNode]


@dataclass(frozen=True, kw_only=True)
class BaselineEvent(Event):
    type = EventKind.BASELINE
    head: str | None
    reused: bool
    files: Sequence[str]
    measured: Sequence[str]
    failing: int
    degraded: Sequence[str]
    evidence: Sequence[JsonObject]


@dataclass(frozen=True, kw_only=True)
class WarningEvent(Event):
    type = EventKind.WARNING
    message: str


@dataclass(frozen=True, kw_only=True)
class NodeStarted(Event):
    type = EventKind.NODE_STARTED
    node: str
    title: str
    kind: str


@dataclass(frozen=True, kw_only=True)
class BundleGenerated(Event):
    type = EventKind.BUNDLE_GENERATED
    node: str
    attempt: int
    files: Sequence[str]
    commands: Sequence[str]
    problems: Sequence[str]


@dataclass(frozen=True, kw_only=True)
class Verification(Event):
    """A node's attempt measured, or (``node`` None, ``stage`` "sheaf") the final check."""

    type = EventKind.VERIFICATION
    node: str | None
    attempt: int | None = _optional(None)
    stage: str | None = _optional(None)
    v_syn: float
    v_str: float
    v_log: float
    v_boot: float
    v_sheaf: float
    v: float
    epsilon: float
    stable: bool
    degraded: Sequence[str]
    evidence: Sequence[JsonObject]

    def components(self) -> dict[str, float]:
        """The energy measured, keyed as ``Energy.as_dict`` keys it (``v_syn`` .. ``v``)."""
        return {
            "v_syn": self.v_syn,
            "v_str": self.v_str,
            "v_log": self.v_log,
            "v_boot": self.v_boot,
            "v_sheaf": self.v_sheaf,
            "v": self.v,
        }


@dataclass(frozen=True, kw_only=True)
class NodeRetrying(Event):
    type = EventKind.NODE_RETRYING
    node: str
    attempt: int
    v: float


@dataclass(frozen=True, kw_only=True)
class AwaitingApproval(Event):
    type = EventKind.AWAITING_APPROVAL
    node: str
    bundle: str
    title: str
    complexity: int
    files: Sequence[str]
    v_syn: float
    v_str: float
    v_log: float
    v_boot: float
    v_sheaf: float
    v: float


@dataclass(frozen=True, kw_only=True)
class BundleRejected(Event):
    type = EventKind.BUNDLE_REJECTED
    node: str
    bundle: str
    feedback: str


@dataclass(frozen=True, kw_only=True)
class BundleEdited(Event):
    type = EventKind.BUNDLE_EDITED
    node: str
    files: Sequence[str]
    dropped: Sequence[str]
    feedback: str


@dataclass(frozen=True, kw_only=True)
class BundleRebased(Event):
    type = EventKind.BUNDLE_REBASED
    node: str
    files: Sequence[str]
    conflicts: Sequence[str]


@dataclass(frozen=True, kw_only=True)
class BundlePartiallyCommitted(Event):
    """Some files of an approved bundle committed; the rest is verified again."""

    type = EventKind.BUNDLE_PARTIALLY_COMMITTED
    node: str
    ledger: str
    files: Sequence[str]
    v: float | None


@dataclass(frozen=True, kw_only=True)
class HunksVerified(Event):
    """The hunks a reviewer approved, verified again as a bundle of their own."""

    type = EventKind.HUNKS_VERIFIED
    node: str
    bundle: str
    hunks: Sequence[str]
    v: float
    stable: bool
    evidence: Sequence[JsonObject]


@dataclass(frozen=True, kw_only=True)
class HunksRejected(Event):
    """Hunks a reviewer rejected left the bundle; the rest is verified again."""

    type = EventKind.HUNKS_REJECTED
    node: str
    bundle: str
    hunks: Sequence[str]
    remaining: int
    feedback: str


@dataclass(frozen=True, kw_only=True)
class NodeCommitted(Event):
    type = EventKind.NODE_COMMITTED
    node: str
    ledger: str
    files: Sequence[str]
    v: float | None
    recovered: bool = _optional(False)


@dataclass(frozen=True, kw_only=True)
class LedgerRefused(Event):
    type = EventKind.LEDGER_REFUSED
    node: str
    bundle: str
    reason: str
    output: str


@dataclass(frozen=True, kw_only=True)
class NodeEscalated(Event):
    type = EventKind.NODE_ESCALATED
    node: str
    title: str
    attempts: int
    energy: Mapping[str, float]
    evidence: Sequence[JsonObject]
    degraded: Sequence[str]
    reason: str


@dataclass(frozen=True, kw_only=True)
class NodeFailed(Event):
    type = EventKind.NODE_FAILED
    node: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class NodeWaiting(Event):
    type = EventKind.NODE_WAITING
    node: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class NodesReopened(Event):
    type = EventKind.NODES_REOPENED
    nodes: Sequence[str]
    v_sheaf: float


@dataclass(frozen=True, kw_only=True)
class BudgetExceededEvent(Event):
    type = EventKind.BUDGET_EXCEEDED
    reason: str
    message: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    unpriced: int


@dataclass(frozen=True, kw_only=True)
class SessionFinished(Event):
    type = EventKind.SESSION_FINISHED
    outcome: str
    reason: str
    budget_exceeded: bool
    totals: SessionTotals
    nodes: Mapping[str, str]


def verification(
    energy: Energy,
    *,
    node: str | None,
    epsilon: float,
    stable: bool,
    evidence: Sequence[JsonObject],
    attempt: int | None = None,
    stage: str | None = None,
) -> Verification:
    """The ``verification`` event of a measured ``energy``."""
    v = energy.as_dict()
    return Verification(
        node=node,
        attempt=attempt,
        stage=stage,
        v_syn=v["v_syn"],
        v_str=v["v_str"],
        v_log=v["v_log"],
        v_boot=v["v_boot"],
        v_sheaf=v["v_sheaf"],
        v=v["v"],
        epsilon=epsilon,
        stable=stable,
        degraded=list(energy.degraded_sensors),
        evidence=evidence,
    )


#: The record of every kind.
RECORDS: Mapping[EventKind, type[Event]] = {
    cls.type: cls
    for cls in (
        SessionStarted,
        SessionResumed,
        PlanInvalid,
        PlanFailed,
        PlanRepaired,
        Explore,
        PlanReady,
        BaselineEvent,
        WarningEvent,
        NodeStarted,
        BundleGenerated,
        FileAdopted,
        Verification,
        NodeRetrying,
        AwaitingApproval,
        BundleRejected,
        BundleEdited,
        BundleRebased,
        BundlePartiallyCommitted,
        HunksVerified,
        HunksRejected,
        NodeCommitted,
        LedgerRefused,
        NodeEscalated,
        NodeFailed,
        NodeWaiting,
        NodesReopened,
        BudgetExceededEvent,
        SessionFinished,
    )
}


def json_keys(cls: type[Event]) -> list[str]:
    """The keys a record of ``cls`` may have besides ``ts``, ``session`` and ``type``."""
    return [f.name for f in dataclasses.fields(cls) if f.name not in ("ts", "session")]


def parse_event(data: Mapping[str, object]) -> Event:
    """The record of an event object (as printed or stored); :class:`EventError` if it is
    not one: an unknown ``type``, a key missing or unknown, a value of the wrong type."""
    if not isinstance(data, Mapping):
        raise EventError(f"an event is a JSON object, not {_shown(data)}")
    kind = data.get("type")
    try:
        cls = RECORDS[EventKind(str(kind))]
    except ValueError:
        known = ", ".join(k.value for k in EventKind)
        raise EventError(f"unknown event type {kind!r} (known: {known})") from None
    decoded: Event = _decode_record(cls, data, f"{kind} event")
    return decoded


# -- JSON <-> records -------------------------------------------------------------------


def _plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """``cls``'s field types, resolved once (records are few and never change)."""
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _decode_record(cls: type[Any], data: Mapping[str, object], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    extra = sorted(set(data) - set(fields) - ({"type"} if issubclass(cls, Event) else set()))
    if extra:
        raise EventError(f"{where}: unknown key(s) {', '.join(extra)}")
    hints = _hints(cls)
    values: dict[str, object] = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING:
                raise EventError(f"{where}: missing key {name!r}")
            continue
        values[f.name] = _decode(hints[f.name], data[name], f"{where}: {name}")
    return cls(**values)


def _decode(tp: Any, value: object, where: str) -> object:
    origin = get_origin(tp)
    if tp is object or tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for option in get_args(tp):
            try:
                return _decode(option, value, where)
            except EventError:
                continue
        raise EventError(f"{where} should be {_name(tp)}, not {_shown(value)}")
    if origin is not None and origin in (Sequence, list, tuple):
        if not isinstance(value, list | tuple):
            raise EventError(f"{where} should be a list, not {_shown(value)}")
        (item,) = get_args(tp)[:1]
        return [_decode(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is not None and origin in (Mapping, dict):
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise EventError(f"{where} should be an object, not {_shown(value)}")
        item = get_args(tp)[1]
        return {k: _decode(item, v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise EventError(f"{where} should be an object, not {_shown(value)}")
        return _decode_record(tp, value, where)
    if _is_a(tp, value):
        return value
    raise EventError(f"{where} should be {_name(tp)}, not {_shown(value)}")


def _is_a(tp: Any, value: object) -> bool:
    if tp is type(None):
        return value is None
    if tp is float:  # JSON has one number type: 3 is a float too
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(tp, type) and isinstance(value, tp)


def _name(tp: Any) -> str:
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


# -- the log ----------------------------------------------------------------------------


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventLog:
    """Stamps each record with ``ts`` and ``session``, then stores it and sends it to the sink."""

    def __init__(
        self,
        session_id: str,
        store: SessionRecords,
        sink: EventSink,
        redactor: Callable[[str], str] | None = None,
    ) -> None:
        self._session_id = session_id
        self._store = store
        self._sink = sink
        self._redactor = redactor

    def redact(self, text: str) -> str:
        """``text`` without the session's secrets, for what is shown but not emitted here."""
        return self._redactor(text) if self._redactor is not None else text

    async def emit(self, event: Event) -> None:
        event = self._redacted(event).stamped(now_iso(), self._session_id)
        await self._store.record_event(event)
        self._sink.emit(event)

    def announce(self, event: Event) -> None:
        """Send ``event`` to the sink only, unstamped and not stored (``plan_invalid``)."""
        self._sink.emit(self._redacted(event))

    def _redacted(self, event: Event) -> Event:
        """The record with every string in its fields redacted (the stamps are Keel's own)."""
        if self._redactor is None:
            return event
        return parse_event(redact(event.to_json(), self._redactor))
