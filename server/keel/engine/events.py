"""The session's event stream (docs/reference/events.md): stamped, stored, then sent to the sink.

Events quote evidence (command output, file content), so they are redacted once here, before
they reach the store or the sink: ``--json`` output is often kept as a CI log.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from keel.engine.ports import EventSink, SessionStore
from keel.engine.redaction import redact


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventLog:
    """Emits ``{"ts", "session", "type", ...}`` objects to the store and the sink, in order."""

    def __init__(
        self,
        session_id: str,
        store: SessionStore,
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

    async def emit(self, type_: str, **fields: Any) -> None:
        if self._redactor is not None:
            fields = redact(fields, self._redactor)
        event = {"ts": now_iso(), "session": self._session_id, "type": type_, **fields}
        await self._store.record_event(self._session_id, event)
        self._sink.emit(event)
