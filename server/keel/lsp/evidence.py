"""The editor's diagnostics as evidence for the engine's final sheaf check.

The engine's :class:`~keel.engine.ports.EditorEvidence` port, implemented by the language
server: for each file the sheaf check verifies, the latest forwarded ``keel/editorDiagnostics``
report counts only when it is pinned to exactly the content being checked (the committed
text, which is what the disk holds for a file nobody changed since). When a buffer shows that
content but its report has not arrived yet, the check waits for it, at most ``editor_wait_s``
(as approval does), then goes on without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from keel.engine.models import Residual, SensorReport
from keel.lsp.documents import DocumentTracker, EditorDiagnostics, EditorReport, disk_digest


class EditorEvidenceSource:
    """The forwarded editor diagnostics of the files under ``root``, as V_syn residuals."""

    def __init__(
        self, documents: DocumentTracker, editor: EditorDiagnostics, wait_s: float
    ) -> None:
        self._documents, self._editor, self._wait_s = documents, editor, wait_s

    async def diagnostics(self, root: Path, files: Sequence[str]) -> SensorReport:
        contents = await asyncio.to_thread(lambda: {p: disk_digest(root, p) for p in files})
        reports = await asyncio.gather(*(self._report(p, c) for p, c in contents.items()))
        residuals: list[Residual] = []
        for report in reports:
            if report is not None:
                residuals.extend(report.residuals)
        return SensorReport("editor", tuple(residuals))

    async def _report(self, path: str, content: str) -> EditorReport | None:
        report = self._editor.for_content(path, content)
        if report is not None:
            return report
        document = self._documents.by_path(path)
        if document is None or document.current != content:
            return None  # the editor shows other text (or nothing): no evidence about this one
        return await self._editor.wait_for(path, content, self._wait_s)
