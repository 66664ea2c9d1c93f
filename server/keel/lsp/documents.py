"""What the editor has open, and what text each forwarded diagnostic describes.

Editor diagnostics are only evidence about the exact text they were computed for. The
server keeps a short history of every open buffer's versions (a digest per version), so a
``keel/editorDiagnostics`` report can be pinned to the text it describes: the buffer at its
``version``, the current buffer when it has none, or the file on disk for a closed file.
Reports for versions the server never saw (or has forgotten) are stale and dropped.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from keel.engine.models import Residual
from keel.lsp.args import EditorDiagnostic
from keel.lsp.convert import OpenText

HISTORY = 32


def digest(data: bytes | str | None) -> str:
    """A short content digest; ``None`` (no file) and empty text are distinct."""
    if data is None:
        return "absent"
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


@dataclass
class OpenDocument:
    uri: str
    path: str | None
    version: int | None
    history: OrderedDict[int, str] = field(default_factory=OrderedDict)
    current: str = ""

    def record(self, version: int | None, text: str) -> None:
        self.version, self.current = version, digest(text)
        if version is not None:
            self.history[version] = self.current
            self.history.move_to_end(version)
            while len(self.history) > HISTORY:
                self.history.popitem(last=False)


class DocumentTracker:
    """Open buffers by URI (their text lives in pygls's workspace; digests live here).

    ``text`` reads a buffer's current text by URI (pygls's workspace, or a test's dict).
    """

    def __init__(self, text: Callable[[str], str]) -> None:
        self._open: dict[str, OpenDocument] = {}
        self._text = text

    def text(self, uri: str) -> str:
        """The buffer's current text as the editor has it."""
        return self._text(uri)

    def buffers(self, paths: list[str]) -> dict[str, OpenText]:
        """The open buffers among ``paths``, with their text as the editor has it."""
        out = {}
        for path in paths:
            document = self.by_path(path)
            if document is not None:
                out[path] = OpenText(document.uri, document.version, self.text(document.uri))
        return out

    def opened(self, uri: str, path: str | None, version: int | None, text: str) -> None:
        document = OpenDocument(uri, path, version)
        document.record(version, text)
        self._open[uri] = document

    def changed(self, uri: str, version: int | None, text: str) -> None:
        document = self._open.get(uri)
        if document is not None:
            document.record(version, text)

    def closed(self, uri: str) -> None:
        self._open.pop(uri, None)

    def get(self, uri: str) -> OpenDocument | None:
        return self._open.get(uri)

    def by_path(self, path: str) -> OpenDocument | None:
        return next((d for d in self._open.values() if d.path == path), None)

    def pin(self, uri: str, version: int | None) -> str | None:
        """The digest of the text a report for ``version`` describes, if the buffer is open.

        ``None`` when the buffer is not open; ``"stale"`` when the version is unknown.
        """
        document = self._open.get(uri)
        if document is None:
            return None
        if version is None or version == document.version:
            return document.current
        return document.history.get(version, "stale")


@dataclass(frozen=True)
class EditorReport:
    """The editor's diagnostics for one file, pinned to the text they describe."""

    path: str
    uri: str
    content: str
    diagnostics: tuple[EditorDiagnostic, ...]
    residuals: tuple[Residual, ...]
    sequence: int


class EditorDiagnostics:
    """The latest forwarded report per file, and waiters for the next one."""

    def __init__(self, on_change: Callable[[str], None]) -> None:
        self._reports: dict[str, EditorReport] = {}
        self._waiters: dict[str, list[asyncio.Future[EditorReport]]] = {}
        self._on_change = on_change
        self._sequence = 0

    def next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    def put(self, report: EditorReport) -> None:
        current = self._reports.get(report.path)
        if current is not None and current.sequence > report.sequence:
            return  # an older report finished pinning late
        self._reports[report.path] = report
        for waiter in self._waiters.pop(report.path, []):
            if not waiter.done():
                waiter.set_result(report)
        self._on_change(report.path)

    def latest(self, path: str) -> EditorReport | None:
        return self._reports.get(path)

    def for_content(self, path: str, content: str) -> EditorReport | None:
        report = self._reports.get(path)
        return report if report is not None and report.content == content else None

    async def wait_for(self, path: str, content: str, wait_s: float) -> EditorReport | None:
        """A report for exactly ``content``; ``None`` when none arrives within ``wait_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while (found := self.for_content(path, content)) is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            waiter: asyncio.Future[EditorReport] = loop.create_future()
            self._waiters.setdefault(path, []).append(waiter)
            try:
                await asyncio.wait_for(asyncio.shield(waiter), remaining)
            except TimeoutError:
                return None
            finally:
                waiters = self._waiters.get(path, [])
                if waiter in waiters:
                    waiters.remove(waiter)
        return found

    def paths(self) -> Sequence[str]:
        return list(self._reports)


def disk_digest(root: Path, path: str) -> str:
    """The digest of a workspace file as it is on disk (run in a worker thread)."""
    try:
        return digest((root / path).read_bytes())
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return digest(None)
    except OSError:
        return "unreadable"
