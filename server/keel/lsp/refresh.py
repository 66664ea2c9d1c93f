"""Debounced updates to the client after anything changed.

Engine events and editor diagnostics can come in bursts; within ``DELAY`` they are coalesced
into one ``keel/sessionChanged`` (the status summary), one refresh of CodeLenses (when the
set of pending bundles changed and the client supports ``workspace/codeLens/refresh``) and
one publication of Keel's own findings as diagnostics with ``source: "keel"``: a note on
each changed region of a pending file, the reason of an escalated node on its open files,
and what the final sheaf check found in committed files.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from lsprotocol import types as T

from keel.bundles.hunks import Hunk, file_hunks
from keel.engine.models import Component
from keel.lsp.bundles import BundleRegistry, PendingBundle
from keel.lsp.client import ClientPort, Spawn
from keel.lsp.convert import (
    changed_lines,
    finding,
    finding_severity,
    hunk_lines,
    note,
    path_to_uri,
)
from keel.lsp.documents import DocumentTracker, digest
from keel.lsp.scoring import Scoring
from keel.lsp.views import SessionView

log = logging.getLogger(__name__)
DELAY = 0.1
_Published = tuple[tuple[int, str, int], ...]


class Refresher:
    """Coalesces changes into one round of updates to the client."""

    def __init__(
        self,
        *,
        client: ClientPort,
        spawn: Spawn,
        views: Mapping[str, SessionView],
        bundles: BundleRegistry,
        documents: DocumentTracker,
        scoring: Scoring,
        root: Callable[[], Path | None],
    ) -> None:
        self._client, self._spawn, self._views = client, spawn, views
        self._bundles, self._documents, self._scoring = bundles, documents, scoring
        self._root = root
        self._handle: asyncio.TimerHandle | None = None
        self._published: dict[str, _Published] = {}
        self._lenses: frozenset[str] = frozenset()
        self._regions: dict[tuple[str, str, str], list[int]] = {}
        self._hunks: dict[tuple[str, str, str], list[tuple[Hunk, int]]] = {}

    def schedule(self) -> None:
        if self._handle is None and not self._client.closing:
            loop = asyncio.get_running_loop()
            self._handle = loop.call_later(DELAY, self._fire)

    @property
    def scheduled(self) -> bool:
        """Whether an update to the client is on its way."""
        return self._handle is not None

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        try:
            if self._views or self._bundles.pending():
                self._client.notify("keel/sessionChanged", self._scoring.summary().wire())
            self._publish()
            self._refresh_lenses()
        except Exception:  # one failed refresh must not stop the next
            log.exception("refreshing the editor failed")

    def _refresh_lenses(self) -> None:
        ids = frozenset(b.id for b in self._bundles.pending())
        if ids == self._lenses:
            return
        self._lenses = ids
        if self._client.supports("workspace.code_lens.refresh_support", False):
            self._spawn(self._lens_request(), name="codeLens refresh")

    async def _lens_request(self) -> None:
        try:
            await self._client.refresh_code_lenses()
        except Exception as exc:
            log.debug("codeLens refresh failed: %s", exc)

    def _publish(self) -> None:
        if self._root() is None:
            return
        findings = self._findings()
        for uri in set(self._published) | set(findings):
            diagnostics = findings.get(uri, [])
            key = tuple((d.range.start.line, d.message, int(d.severity or 1)) for d in diagnostics)
            if self._published.get(uri, ()) == key:
                continue
            if key:
                self._published[uri] = key
            else:
                self._published.pop(uri, None)
            params = T.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics)
            self._client.notify(T.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS, params)

    def regions(self, bundle: PendingBundle, path: str) -> list[int]:
        """Where the bundle's changed regions start in the buffer (or its base), cached."""
        document = self._documents.by_path(path)
        if document is not None:
            old = self._documents.text(document.uri)
        else:
            base = bundle.request.base.get(path)
            old = base.decode("utf-8", "replace") if base is not None else ""
        key = (bundle.id, path, digest(old))
        if key not in self._regions:
            if len(self._regions) > 256:
                self._regions.clear()
            new = bundle.request.changes.get(path)
            text = new.decode("utf-8", "replace") if new is not None else ""
            if old == text:  # the buffer shows the proposal: its regions against the base
                base = bundle.request.base.get(path)
                self._regions[key] = changed_lines(text, (base or b"").decode("utf-8", "replace"))
            else:
                self._regions[key] = changed_lines(old, text)
        return self._regions[key]

    def hunks(self, bundle: PendingBundle, path: str) -> list[tuple[Hunk, int]]:
        """The bundle's hunks of ``path``, each with its line (0-based) in the buffer as the
        editor has it (or in the file the bundle was made against), cached."""
        before, after = bundle.request.base.get(path), bundle.request.changes.get(path)
        document = self._documents.by_path(path)
        base = (before or b"").decode("utf-8", "replace")
        shown = self._documents.text(document.uri) if document is not None else base
        key = (bundle.id, path, digest(shown))
        if key not in self._hunks:
            if len(self._hunks) > 256:
                self._hunks.clear()
            found = file_hunks(path, before, after)
            proposal = (after or b"").decode("utf-8", "replace")
            places = hunk_lines(found, base, proposal, shown)
            self._hunks[key] = list(zip(found, places, strict=True))
        return self._hunks[key]

    def _findings(self) -> dict[str, list[T.Diagnostic]]:
        root = self._root()
        assert root is not None
        out: dict[str, list[T.Diagnostic]] = {}
        for bundle in self._bundles.pending():
            energy = self._scoring.pending_energy(bundle)
            for path in bundle.files:
                uri = path_to_uri(root, path)
                lines = self.regions(bundle, path)
                message = (
                    f"Keel: pending change from {bundle.node_id} ({bundle.title}), bundle "
                    f"{bundle.id}, V(x)={energy.total:.3f}: approve, reject or show the diff"
                )
                out.setdefault(uri, []).extend(
                    note(line, message, T.DiagnosticSeverity.Information) for line in lines[:20]
                )
        for view in self._views.values():
            for node in view.nodes.values():
                if node.state != "escalated":
                    continue
                message = f"Keel: {node.id} ({node.title}) escalated: {node.reason}"
                for path in node.owns:
                    if self._documents.by_path(path) is not None:
                        uri = path_to_uri(root, path)
                        out.setdefault(uri, []).append(
                            note(0, message, T.DiagnosticSeverity.Warning)
                        )
            for residual in view.sheaf.evidence if view.sheaf else ():
                if residual.path and residual.component is Component.SHEAF:
                    uri = path_to_uri(root, residual.path)
                    out.setdefault(uri, []).append(
                        finding(residual, finding_severity(residual), "Keel sheaf check: ")
                    )
        return out
