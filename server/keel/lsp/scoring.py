"""Energy as the editor sees it: the engine's measurement with the editor's V_syn.

A pending bundle's V_syn is re-scored from the editor's diagnostics of each file whose
forwarded report describes exactly the proposed content (see
``docs/explanation/editor-diagnostics.md``); for files without such a report the checker's
V_syn stands. A committed node's V_syn follows the latest report for each of its files.
Also here: the session summary that ``keel.server.status`` returns and
``keel/sessionChanged`` carries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keel.engine.energy import energy_from_record, rescore
from keel.engine.models import Energy, EnergyWeights, SensorReport
from keel.lsp.bundles import PendingBundle
from keel.lsp.convert import energy_payload, path_to_uri
from keel.lsp.documents import digest
from keel.lsp.payloads import BundleProposed, SessionRef, SessionSummary, SummaryNode
from keel.lsp.views import NodeView, SessionView

if TYPE_CHECKING:
    from keel.lsp.server import KeelLanguageServer


def _weights(server: KeelLanguageServer, session_id: str) -> tuple[EnergyWeights, float]:
    view = server.views.get(session_id)
    return (view.weights, view.epsilon) if view else (EnergyWeights(), 0.1)


def editor_sources(server: KeelLanguageServer, bundle: PendingBundle) -> dict[str, SensorReport]:
    """The editor's reports that describe the bundle's proposed files, by path."""
    reports = {}
    for path, new in bundle.request.changes.items():
        if new is None:
            continue
        report = server.editor.for_content(path, digest(new))
        if report is not None:
            reports[path] = SensorReport("editor", report.residuals)
    return reports


def pending_energy(server: KeelLanguageServer, bundle: PendingBundle) -> Energy:
    weights, _ = _weights(server, bundle.session_id)
    measured = energy_from_record(bundle.request.energy, bundle.request.evidence)
    return rescore(measured, weights, editor_sources(server, bundle))


def epsilon_of(server: KeelLanguageServer, session_id: str) -> float:
    return _weights(server, session_id)[1]


def node_energy(server: KeelLanguageServer, view: SessionView, node: NodeView) -> Energy | None:
    for bundle in server.bundles.pending():
        if bundle.session_id == view.id and bundle.node_id == node.id:
            return pending_energy(server, bundle)
    if node.energy is None or node.state != "committed":
        return node.energy
    reports = {}
    for path in server.editor.paths():
        report = server.editor.latest(path)
        if report is not None and node.owns_path(path):
            reports[path] = SensorReport("editor", report.residuals)
    return rescore(node.energy, view.weights, reports)


def bundle_payload(server: KeelLanguageServer, bundle: PendingBundle) -> BundleProposed:
    """``keel/bundleProposed``, and an item of the summary's ``pendingBundles``."""
    root = server.root
    files = [path_to_uri(root, p) if root else p for p in bundle.files]
    energy = pending_energy(server, bundle)
    return BundleProposed(
        bundle_id=bundle.id,
        node_id=bundle.node_id,
        title=bundle.title,
        files=files,
        energy=energy_payload(energy, epsilon_of(server, bundle.session_id)),
        session_id=bundle.session_id,
    )


def current_view(server: KeelLanguageServer, session_id: str | None = None) -> SessionView | None:
    if session_id is not None:
        return server.views.get(session_id)
    views = list(server.views.values())
    running = [v for v in views if v.running]
    candidates = running or views
    return candidates[-1] if candidates else None


def summary(server: KeelLanguageServer, session_id: str | None = None) -> SessionSummary:
    """The session summary: nodes with state and latest energy, and pending bundles."""
    view = current_view(server, session_id)
    nodes = []
    for node in view.nodes.values() if view else []:
        energy = node_energy(server, view, node) if view else None
        nodes.append(
            SummaryNode(
                id=node.id,
                title=node.title,
                kind=node.kind,
                state=node.state,
                owns=list(node.owns),
                depends_on=list(node.depends_on),
                attempts=node.attempts,
                energy=energy_payload(energy, view.epsilon) if energy and view else None,
                ledger_entry=node.ledger,
            )
        )
    return SessionSummary(
        session_id=view.id if view else None,
        task=view.task if view else None,
        running=view.running if view else False,
        outcome=view.outcome if view else None,
        reason=view.reason if view else "",
        mode=view.mode if view else None,
        epsilon=view.epsilon if view else None,
        nodes=nodes,
        pending_bundles=[bundle_payload(server, b) for b in server.bundles.pending()],
        sessions=[
            SessionRef(session_id=v.id, task=v.task, running=v.running, outcome=v.outcome)
            for v in server.views.values()
        ],
    )
