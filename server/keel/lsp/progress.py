"""``$/progress`` for every session and every node, cancellable through the token.

Each session gets a token when it starts and each node one when it starts; cancelling
either (``window/workDoneProgress/cancel``) aborts that session, because
``$/cancelRequest`` does not stop work that outlives a request. Tokens are created with
``window/workDoneProgress/create`` only when the client advertises ``window.workDoneProgress``;
reports made before the client answered the creation are queued and sent in order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from lsprotocol import types as T

from keel.engine import events as ev
from keel.lsp.client import ClientPort, Spawn

log = logging.getLogger(__name__)
_Value = T.WorkDoneProgressBegin | T.WorkDoneProgressReport | T.WorkDoneProgressEnd


@dataclass
class _Token:
    token: str
    session_id: str
    key: tuple[str, str | None]
    queue: list[_Value] = field(default_factory=list)
    ready: bool = False
    ended: bool = False


class ProgressReporter:
    """Maps engine events to work-done progress on per-session and per-node tokens."""

    def __init__(self, client: ClientPort, spawn: Spawn) -> None:
        self._client, self._spawn = client, spawn
        self._tokens: dict[str, _Token] = {}
        self._live: dict[tuple[str, str | None], _Token] = {}
        self._count = 0

    def session_of(self, token: str | int) -> str | None:
        found = self._tokens.get(str(token))
        return found.session_id if found else None

    def on_event(self, session_id: str, event: ev.Event, done: int, total: int) -> None:
        session: tuple[str, str | None] = (session_id, None)
        match event:
            case ev.SessionStarted() | ev.SessionResumed():
                self._begin(session, session_id, "Keel: " + _short(event.task))
            case ev.Explore():
                self._report(session, "exploring: " + _explored(event))
            case ev.PlanReady():
                self._report(session, f"planned {total} nodes", 0)
            case ev.NodeCommitted() | ev.NodeEscalated() | ev.NodeFailed():
                self._report(session, f"{done}/{total} nodes committed", _percent(done, total))
                self._end((session_id, event.node), event.type.removeprefix("node_"))
            case ev.SessionFinished():
                self._end(session, f"{event.outcome}: {done}/{total} nodes committed")
            case ev.NodeStarted():
                token = (session_id, event.node)
                self._begin(token, session_id, f"Keel: {event.node} {_short(event.title)}")
            case ev.Verification(node=str(node)):
                verdict = "stable" if event.stable else "unstable"
                message = f"attempt {event.attempt}: V={event.v:.3f} {verdict}"
                self._report((session_id, node), message)
            case ev.AwaitingApproval():
                self._report((session_id, event.node), "awaiting approval")

    def end_session(self, session_id: str, message: str) -> None:
        for key in [k for k in self._live if k[0] == session_id]:
            self._end(key, message)

    def _begin(self, key: tuple[str, str | None], session_id: str, title: str) -> None:
        if not self._client.supports("window.work_done_progress", False) or key in self._live:
            return
        self._count += 1
        name = f"keel-{session_id}-{key[1] or 'session'}-{self._count}"
        state = _Token(name, session_id, key)
        state.queue.append(T.WorkDoneProgressBegin(title=title, cancellable=True))
        self._tokens[name] = state
        self._live[key] = state
        self._spawn(self._create(state), name=f"progress {name}")

    async def _create(self, state: _Token) -> None:
        try:
            await self._client.create_progress(state.token)
        except Exception as exc:  # the client refused or went away: no progress, no harm
            log.debug("progress token %s not created: %s", state.token, exc)
            self._tokens.pop(state.token, None)
            if self._live.get(state.key) is state:
                del self._live[state.key]
            return
        state.ready = True
        self._flush(state)

    def _report(
        self, key: tuple[str, str | None], message: str, percentage: int | None = None
    ) -> None:
        state = self._live.get(key)
        if state is not None:
            state.queue.append(T.WorkDoneProgressReport(message=message, percentage=percentage))
            self._flush(state)

    def _end(self, key: tuple[str, str | None], message: str) -> None:
        state = self._live.pop(key, None)
        if state is not None:
            state.queue.append(T.WorkDoneProgressEnd(message=message))
            state.ended = True
            self._flush(state)

    def _flush(self, state: _Token) -> None:
        if not state.ready:
            return
        for value in state.queue:
            self._client.notify(T.PROGRESS, T.ProgressParams(token=state.token, value=value))
        state.queue.clear()
        if state.ended:
            self._tokens.pop(state.token, None)
            self._client.forget_progress(state.token)


def _short(text: str, limit: int = 60) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _explored(event: ev.Explore) -> str:
    """``open_file click/core.py`` (the tool and its first argument), ``(refused)`` if so."""
    first = next(iter(event.arguments.values()), "")
    refused = " (refused)" if event.refused else ""
    return _short(f"{event.tool} {first}".strip()) + refused


def _percent(done: int, total: int) -> int:
    return int(100 * done / total) if total else 0
