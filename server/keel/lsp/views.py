"""What the server knows about each session, kept up to date from the engine's events.

A :class:`SessionView` is built from the event stream of a session this server runs, or
from the store (:func:`hydrate`) for a session an earlier server or ``keel agent`` ran, so
hovers over committed files and ``keel.server.status`` work after a reconnect too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from keel.engine.energy import energy_from_record, weights_from
from keel.engine.models import Energy, EnergyWeights


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
    epsilon: float = 0.1
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

    def apply(self, event: Mapping[str, Any]) -> None:
        """Fold one engine event (docs/reference/events.md) into the view."""
        kind, node_id = event.get("type"), event.get("node")
        if kind in ("session_started", "session_resumed"):
            self.running, self.outcome = True, None
            self.task = str(event.get("task", self.task))
            self.mode = str(event.get("mode", self.mode))
            self.epsilon = float(event.get("epsilon", self.epsilon))
        elif kind == "plan_ready":
            for item in event.get("nodes", []):
                node = self.node(str(item["id"]))
                node.title, node.kind = str(item.get("title", "")), str(item.get("kind", ""))
                node.owns = [str(p) for p in item.get("owns", [])]
                node.depends_on = [str(d) for d in item.get("depends_on", [])]
        elif kind == "session_finished":
            self.running = False
            self.outcome, self.reason = event.get("outcome"), str(event.get("reason", ""))
            for nid, state in (event.get("nodes") or {}).items():
                self.node(str(nid)).state = str(state)
        elif kind == "verification":
            energy = energy_from_record(event, event.get("evidence", []), event.get("degraded", []))
            if node_id is None:
                self.sheaf = energy
                return
            node = self.node(str(node_id))
            node.energy = energy
            node.attempts = max(node.attempts, int(event.get("attempt") or 0))
        elif node_id is not None:
            self._node_event(str(kind), self.node(str(node_id)), event)

    @staticmethod
    def _node_event(kind: str, node: NodeView, event: Mapping[str, Any]) -> None:
        states = {
            "node_started": "running",
            "node_retrying": "retrying",
            "awaiting_approval": "awaiting_approval",
            "node_committed": "committed",
            "node_escalated": "escalated",
            "node_failed": "failed",
            "node_waiting": "waiting",
        }
        if kind in states:
            node.state = states[kind]
        if kind == "node_started":
            node.title = str(event.get("title", node.title))
        elif kind in ("node_committed", "bundle_partially_committed"):
            node.ledger = str(event.get("ledger"))
        elif kind in ("node_escalated", "node_failed", "node_waiting"):
            node.reason = str(event.get("reason", ""))
        elif kind == "bundle_generated":
            node.state = "verifying"


def hydrate(
    session: Mapping[str, Any],
    plan: Mapping[str, Any] | None,
    nodes: Sequence[Mapping[str, Any]],
    attempts: Sequence[Mapping[str, Any]],
) -> SessionView:
    """A view of a stored session, from the store's rows."""
    config = session.get("config") or {}
    view = SessionView(str(session["id"]), task=str(session.get("task", "")))
    view.mode = str(config.get("mode", ""))
    view.epsilon = float(config.get("epsilon", 0.1))
    try:
        view.weights = weights_from([float(w) for w in config.get("weights") or [1, 0.5, 2]])
    except (TypeError, ValueError):
        view.weights = EnergyWeights()
    view.outcome = session.get("outcome")
    for item in (plan or {}).get("plan", {}).get("nodes", []):
        node = view.node(str(item["id"]))
        node.title, node.kind = str(item.get("title", "")), str(item.get("kind", ""))
        node.owns = [str(p) for p in item.get("owns", [])]
        node.depends_on = [str(d) for d in item.get("depends_on", [])]
    for row in nodes:
        node = view.node(str(row["node_id"]))
        node.state = str(row["state"])
        node.title = node.title or str(row.get("title", ""))
    for row in attempts:
        node = view.node(str(row["node_id"]))
        node.attempts = max(node.attempts, int(row["attempt"]))
        node.energy = energy_from_record(row.get("energy") or {}, row.get("evidence") or [])
    return view
