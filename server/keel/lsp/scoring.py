"""Energy as the editor sees it: the engine's measurement with the editor's V_syn.

A pending bundle's V_syn is re-scored from the editor's diagnostics of each file whose
forwarded report describes exactly the proposed content (see
``docs/explanation/editor-diagnostics.md``); for files without such a report the checker's
V_syn stands. A committed node's V_syn follows the latest report for each of its files.
Also here: the session summary that ``keel.server.status`` returns and
``keel/sessionChanged`` carries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from keel.engine import defaults
from keel.engine.energy import energy_from_record, rescore
from keel.engine.models import Energy, EnergyWeights, SensorReport
from keel.lsp.bundles import BundleRegistry, PendingBundle
from keel.lsp.convert import energy_payload, path_to_uri
from keel.lsp.documents import EditorDiagnostics, digest
from keel.lsp.payloads import BundleProposed, SessionRef, SessionSummary, SummaryNode
from keel.lsp.views import NodeView, SessionView


class Scoring:
    """Energies, bundle payloads and the session summary, from the sessions' views, the
    pending bundles and the editor's reports."""

    def __init__(
        self,
        views: Mapping[str, SessionView],
        bundles: BundleRegistry,
        editor: EditorDiagnostics,
        root: Callable[[], Path | None],
    ) -> None:
        self._views, self._bundles, self._editor, self._root = views, bundles, editor, root

    def _weights(self, session_id: str) -> tuple[EnergyWeights, float]:
        view = self._views.get(session_id)
        return (view.weights, view.epsilon) if view else (EnergyWeights(), defaults.EPSILON)

    def editor_sources(self, bundle: PendingBundle) -> dict[str, SensorReport]:
        """The editor's reports that describe the bundle's proposed files, by path."""
        reports = {}
        for path, new in bundle.request.changes.items():
            if new is None:
                continue
            report = self._editor.for_content(path, digest(new))
            if report is not None:
                reports[path] = SensorReport("editor", report.residuals)
        return reports

    def pending_energy(self, bundle: PendingBundle) -> Energy:
        weights, _ = self._weights(bundle.session_id)
        measured = energy_from_record(bundle.request.energy, bundle.request.evidence)
        return rescore(measured, weights, self.editor_sources(bundle))

    def epsilon_of(self, session_id: str) -> float:
        return self._weights(session_id)[1]

    def node_energy(self, view: SessionView, node: NodeView) -> Energy | None:
        for bundle in self._bundles.pending():
            if bundle.session_id == view.id and bundle.node_id == node.id:
                return self.pending_energy(bundle)
        if node.energy is None or node.state != "committed":
            return node.energy
        reports = {}
        for path in self._editor.paths():
            report = self._editor.latest(path)
            if report is not None and node.owns_path(path):
                reports[path] = SensorReport("editor", report.residuals)
        return rescore(node.energy, view.weights, reports)

    def bundle_payload(self, bundle: PendingBundle) -> BundleProposed:
        """``keel/bundleProposed``, and an item of the summary's ``pendingBundles``."""
        root = self._root()
        files = [path_to_uri(root, p) if root else p for p in bundle.files]
        energy = self.pending_energy(bundle)
        return BundleProposed(
            bundle_id=bundle.id,
            node_id=bundle.node_id,
            title=bundle.title,
            files=files,
            energy=energy_payload(energy, self.epsilon_of(bundle.session_id)),
            session_id=bundle.session_id,
        )

    def current_view(self, session_id: str | None = None) -> SessionView | None:
        if session_id is not None:
            return self._views.get(session_id)
        views = list(self._views.values())
        running = [v for v in views if v.running]
        candidates = running or views
        return candidates[-1] if candidates else None

    def summary(self, session_id: str | None = None) -> SessionSummary:
        """The session summary: nodes with state and latest energy, and pending bundles."""
        view = self.current_view(session_id)
        nodes = []
        for node in view.nodes.values() if view else []:
            energy = self.node_energy(view, node) if view else None
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
            pending_bundles=[self.bundle_payload(b) for b in self._bundles.pending()],
            sessions=[
                SessionRef(session_id=v.id, task=v.task, running=v.running, outcome=v.outcome)
                for v in self._views.values()
            ],
        )
