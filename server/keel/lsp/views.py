"""What the server knows about each session, kept up to date from the engine's events.

A :class:`SessionView` is built from the event stream of a session this server runs, or
from the store (:func:`hydrate`) for a session an earlier server or ``keel agent`` ran, so
hovers over committed files and ``keel.server.status`` work after a reconnect too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from keel.engine import defaults
from keel.engine import events as ev
from keel.engine.energy import energy_from_record, weights_from
from keel.engine.models import WAITING, Energy, EnergyWeights, NodeState
from keel.engine.records import AttemptRecord, NodeRecord, PlanRecord, SessionRecord


@dataclass
class NodeView:
    id: str
    title: str = ""
    kind: str = ""
    owns: list[str] = field(default_factory=list)
    depends_on: list[str] = field(default_factory=list)
    state: str = "queued"
    attempts: int = 0
    energy: Energy | None = None
    ledger: str | None = None
    reason: str = ""

    def owns_path(self, path: str) -> bool:
        for owned in self.owns:
            owned = owned.rstrip("/")
            if path == owned or path.startswith(owned + "/"):
                return True
        return False


@dataclass
class SessionView:
    id: str
    task: str = ""
    mode: str = ""
    epsilon: float = defaults.EPSILON
    weights: EnergyWeights = field(default_factory=EnergyWeights)
    running: bool = False
    outcome: str | None = None
    reason: str = ""
    nodes: dict[str, NodeView] = field(default_factory=dict)
    sheaf: Energy | None = None

    def node(self, node_id: str) -> NodeView:
        return self.nodes.setdefault(node_id, NodeView(node_id))

    def owner_of(self, path: str) -> NodeView | None:
        return next((n for n in self.nodes.values() if n.owns_path(path)), None)

    def apply(self, event: ev.Event) -> None:
        """Fold one engine event (docs/reference/events.md) into the view."""
        match event:
            case ev.SessionStarted() | ev.SessionResumed():
                self.running, self.outcome = True, None
                self.task, self.mode, self.epsilon = event.task, event.mode, event.epsilon
            case ev.PlanReady():
                for item in event.nodes:
                    node = self.node(item.id)
                    node.title, node.kind, node.owns = item.title, item.kind, list(item.owns)
                    node.depends_on = list(item.depends_on)
            case ev.SessionFinished():
                self.running = False
                self.outcome, self.reason = event.outcome, event.reason
                for nid, state in event.nodes.items():
                    self.node(nid).state = state
            case ev.Verification(node=None):
                self.sheaf = _energy(event)
            case ev.Verification(node=str(node_id)):
                node = self.node(node_id)
                node.energy = _energy(event)
                node.attempts = max(node.attempts, event.attempt or 0)
            case _:
                self._node_event(event)

    def _node_event(self, event: ev.Event) -> None:
        node_id = event.node_id
        if node_id is None:
            return
        node = self.node(node_id)
        state = _NODE_STATES.get(event.type)
        if state is not None:
            node.state = state
        match event:
            case ev.NodeStarted():
                node.title = event.title
            case ev.NodeCommitted() | ev.BundlePartiallyCommitted():
                node.ledger = event.ledger
            case ev.NodeEscalated() | ev.NodeFailed() | ev.NodeWaiting():
                node.reason = event.reason
            case ev.BundleGenerated():
                node.state = "verifying"


#: The node state each event leaves its node in.
_NODE_STATES: Mapping[ev.EventKind, str] = {
    ev.EventKind.NODE_STARTED: NodeState.RUNNING,
    ev.EventKind.NODE_RETRYING: NodeState.RETRYING,
    ev.EventKind.AWAITING_APPROVAL: NodeState.AWAITING_APPROVAL,
    ev.EventKind.NODE_COMMITTED: NodeState.COMMITTED,
    ev.EventKind.NODE_ESCALATED: NodeState.ESCALATED,
    ev.EventKind.NODE_FAILED: NodeState.FAILED,
    ev.EventKind.NODE_WAITING: WAITING,
}


def _energy(event: ev.Verification) -> Energy:
    return energy_from_record(event.components(), event.evidence, event.degraded)


def hydrate(
    session: SessionRecord,
    plan: PlanRecord | None,
    nodes: Sequence[NodeRecord],
    attempts: Sequence[AttemptRecord],
) -> SessionView:
    """A view of a stored session, from the store's records."""
    config = session.config
    view = SessionView(session.id, task=session.task)
    view.mode = str(config.get("mode", ""))
    try:
        view.epsilon = float(config.get("epsilon", defaults.EPSILON))
    except (TypeError, ValueError):
        view.epsilon = defaults.EPSILON
    try:
        view.weights = weights_from([float(w) for w in config.get("weights") or defaults.WEIGHTS])
    except (TypeError, ValueError):
        view.weights = EnergyWeights()
    view.outcome = session.outcome
    for item in (plan.plan if plan else {}).get("nodes", []):
        node = view.node(str(item["id"]))
        node.title, node.kind = str(item.get("title", "")), str(item.get("kind", ""))
        node.owns = [str(p) for p in item.get("owns", [])]
        node.depends_on = [str(d) for d in item.get("depends_on", [])]
    for row in nodes:
        node = view.node(row.node_id)
        node.state = row.state
        node.title = node.title or row.title
    for attempt in attempts:
        node = view.node(attempt.node_id)
        node.attempts = max(node.attempts, attempt.attempt)
        node.energy = energy_from_record(attempt.energy, attempt.evidence)
    return view
