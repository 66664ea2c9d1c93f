"""``keel/editorDiagnostics``: the editor's own diagnostics, forwarded by the extensions.

Each report is validated (a malformed one is logged and dropped), stripped of Keel's own
``source: "keel"`` diagnostics, converted to V_syn residuals and pinned to the text it
describes (see ``keel.lsp.documents``): a report for a version the server does not know, a
URI outside the workspace or not a ``file:`` URI is ignored. Storing a report is immediate;
what depends on it (the session summary, CodeLenses, Keel's findings) follows, debounced.

Also here: ``keel/oversized``, the stand-in the transport puts where a message over the size
limit was skipped.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from keel.lsp.args import EditorDiagnosticsParams
from keel.lsp.convert import editor_residuals, uri_to_path
from keel.lsp.documents import EditorReport, disk_digest
from keel.lsp.errors import invalid

if TYPE_CHECKING:
    from pygls.lsp.server import LanguageServer

    from keel.lsp.services import Services

log = logging.getLogger(__name__)


def register(ls: LanguageServer, services: Services) -> None:
    @ls.feature("keel/editorDiagnostics")
    def editor_diagnostics(params: Any) -> None:
        try:
            report = EditorDiagnosticsParams.model_validate(params)
        except ValidationError as exc:
            log.warning("ignored a malformed keel/editorDiagnostics: %s", exc.errors()[:3])
            return
        root = services.workspace.root
        path = uri_to_path(report.uri, root) if root else None
        if path is None or root is None:
            log.debug("ignored editor diagnostics for %s (not a workspace file)", report.uri)
            return
        diagnostics, skipped = report.parsed()
        if skipped:
            log.info("%s: skipped %d unusable diagnostics", path, skipped)
        sequence = services.editor.next_sequence()
        kept = tuple(d for d in diagnostics if d.source != "keel")
        residuals = tuple(editor_residuals(path, diagnostics))

        def store(content: str) -> None:
            if content == "stale":
                log.debug("ignored editor diagnostics for %s v%s (stale)", path, report.version)
                return
            services.editor.put(EditorReport(path, report.uri, content, kept, residuals, sequence))

        content = services.documents.pin(report.uri, report.version)
        if content is not None:
            store(content)  # at once: the next hover already sees it
            return

        async def pin_to_disk() -> None:  # not open: the diagnostics are about the file
            store(await asyncio.to_thread(disk_digest, root, path))

        services.spawn(pin_to_disk(), name=f"editor diagnostics of {path}")

    @ls.feature("keel/oversized")
    def oversized(params: Any) -> None:
        size, limit = params.get("bytes"), params.get("limit")
        method = params.get("method") or "a message"
        message = f"Keel skipped {method} of {size} bytes: over the limit of {limit} bytes"
        log.warning(message)
        if params.get("request"):
            raise invalid(message)
        services.client.show(message)
