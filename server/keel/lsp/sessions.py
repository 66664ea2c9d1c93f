"""Sessions in the editor: started, resumed and aborted as background tasks.

Each session runs ``Engine.run`` in a task tracked on the server, with an event sink that
feeds the session's view, progress and notifications, and an approver that parks stable
bundles for the editor's decision. The engine is entered (workspace lock, model clients)
before ``startSession`` answers, so a refusal (another Keel process is running, a missing
API key) is the command's error rather than a lost background failure. Cancelling the task
aborts the session cleanly; its state stays in the store for ``keel.server.resume`` or
``keel resume``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from lsprotocol import types as T

from keel.config import session_layer
from keel.engine.planner import PlanScope
from keel.engine.ports import ApprovalRequest, Decision, KeelError, Settlement
from keel.engine.session import SessionResult, new_session_id
from keel.lsp import scoring
from keel.lsp.args import ScopeArgs
from keel.lsp.convert import uri_to_path
from keel.lsp.errors import invalid
from keel.lsp.evidence import EditorEvidenceSource
from keel.lsp.views import SessionView, hydrate

if TYPE_CHECKING:
    from keel.lsp.server import KeelLanguageServer

log = logging.getLogger(__name__)


class EditorSink:
    """The engine's event sink for one session: view, progress, then a debounced refresh."""

    def __init__(self, server: KeelLanguageServer, view: SessionView) -> None:
        self._server = server
        self._view = view

    def emit(self, event: Mapping[str, Any]) -> None:
        view = self._view
        view.apply(event)
        if event.get("type") in ("node_committed", "bundle_partially_committed"):
            self._server.bundles.committed(str(event.get("ledger")))
        done = sum(n.state == "committed" for n in view.nodes.values())
        self._server.reporter.on_event(view.id, event, done, len(view.nodes))
        self._server.refresh.schedule()


class EditorApprover:
    """Approval through the editor: the bundle waits until a command decides it."""

    def __init__(self, server: KeelLanguageServer, session_id: str) -> None:
        self._server = server
        self._session_id = session_id

    async def review(self, request: ApprovalRequest) -> Decision | None:
        server = self._server
        bundle = server.bundles.propose(self._session_id, request)
        server.notify("keel/bundleProposed", scoring.bundle_payload(server, bundle).wire())
        server.refresh.schedule()
        try:
            return await bundle.decision
        finally:  # a cancelled wait cancels the future too: the session stopped
            if bundle.decision.cancelled() or not bundle.decision.done():
                server.bundles.retire(bundle)
                server.refresh.schedule()

    async def approve_command(self, node_id: str, command: str) -> bool:
        """Ask the user (``window/showMessageRequest``) before a command off the allow-list."""
        run, skip = T.MessageActionItem(title="Run it"), T.MessageActionItem(title="Don't run")
        params = T.ShowMessageRequestParams(
            type=T.MessageType.Warning,
            message=f"Keel: {node_id} wants to run `{command}` (not on the allow-list).",
            actions=[run, skip],
        )
        try:
            answer = await self._server.window_show_message_request_async(params)
        except Exception as exc:
            log.warning("could not ask about `%s`: %s", command, exc)
            return False
        return answer is not None and answer.title == run.title

    async def settled(self, request: ApprovalRequest, settlement: Settlement) -> None:
        self._server.bundles.settle(request, settlement)
        self._server.refresh.schedule()


def plan_scope(server: KeelLanguageServer, scope: ScopeArgs) -> PlanScope:
    """``startSession``'s ``scope`` as the planner's limits; a file outside the workspace is
    invalid."""
    paths = []
    for uri in scope.files:
        path = uri_to_path(uri, server.root) if server.root else None
        if path is None:
            raise invalid(f"scope file {uri} is not a file of the workspace")
        paths.append(path)
    return PlanScope(max_nodes=scope.max_nodes, must_own=tuple(paths))


async def start(
    server: KeelLanguageServer,
    task: str,
    *,
    mode: str | None = None,
    scope: PlanScope | None = None,
    resume: Mapping[str, Any] | None = None,
) -> str:
    """Start (or, with a stored ``resume`` record, continue) a session; returns its id."""
    host = await server.host()
    if resume is not None:
        settings = await server.resolve_settings(session_layer(resume["config"]))
        session_id = str(resume["id"])
    else:
        settings = await server.resolve_settings({"engine": {"mode": mode}} if mode else None)
        session_id = new_session_id()
    server.report_problems(settings.problems)
    engine_settings = settings.config.engine_settings(auto_approve=False)
    view = SessionView(session_id, task=task, mode=engine_settings.mode)
    view.epsilon, view.weights, view.running = (
        engine_settings.epsilon,
        engine_settings.weights,
        True,
    )
    if resume is not None and session_id in server.views:
        view.nodes = server.views[session_id].nodes
    sink, approver = EditorSink(server, view), EditorApprover(server, session_id)
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def run() -> SessionResult | None:
        try:
            async with host.engine(task, settings.config, sink=sink, approver=approver) as engine:
                # The final sheaf check hears the editor's diagnostics of committed files.
                engine = replace(engine, editor=EditorEvidenceSource(server), plan_scope=scope)
                started.set_result(None)
                return await engine.run(task, session_id, resume=resume is not None)
        except Exception as exc:
            if started.done():
                raise
            started.set_exception(exc)  # startSession reports it
            return None

    run_task = server.run_task(run(), name=f"session {session_id}")
    await started
    server.views.pop(session_id, None)
    server.views[session_id] = view
    server.runs[session_id] = run_task
    run_task.add_done_callback(lambda _: _ended(server, view))
    return session_id


def _ended(server: KeelLanguageServer, view: SessionView) -> None:
    server.runs.pop(view.id, None)
    view.running = False
    server.bundles.session_ended(view.id)
    server.reporter.end_session(view.id, view.outcome or "stopped")
    if not server.closing:
        server.refresh.schedule()


async def resume(server: KeelLanguageServer, session_id: str | None) -> str:
    host = await server.host()
    session_id = session_id or await host.store.latest_session_id()
    record = await host.store.session(session_id) if session_id else None
    if record is None:
        raise KeelError(f"no session {session_id} to resume" if session_id else "no session yet")
    if record["id"] in server.runs:
        raise KeelError(f"session {record['id']} is already running")
    return await start(server, str(record["task"]), resume=record)


def abort(server: KeelLanguageServer, session_id: str | None = None) -> list[str]:
    """Cancel the running session(s): each ends ``aborted`` with its state stored."""
    ids = [session_id] if session_id else list(server.runs)
    aborted = []
    for sid in ids:
        run = server.runs.get(sid)
        if run is not None and not run.done():
            run.cancel("aborted from the editor")
            aborted.append(sid)
    return aborted


async def load_latest(server: KeelLanguageServer) -> None:
    """After a (re)connect: the latest stored session's view, for status and hovers."""
    root = server.root
    if server.opened_host is None and (root is None or not (root / ".keel" / "keel.db").is_file()):
        return  # Keel never ran here: do not create a repository or a store just to look
    store = (await server.host()).store
    session_id = await store.latest_session_id()
    if session_id is None or session_id in server.views:
        return
    record = await store.session(session_id)
    if record is None:
        return
    plan, nodes, attempts = await asyncio.gather(
        store.plan(session_id), store.nodes(session_id), store.attempts(session_id)
    )
    server.views.setdefault(session_id, hydrate(record, plan, nodes, attempts))
    server.refresh.schedule()
