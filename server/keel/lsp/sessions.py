"""Sessions in the editor: started, resumed and aborted as background tasks.

:class:`Sessions` owns the views of the sessions this server runs or loaded, and their
tasks. Each session runs ``Engine.run`` in a tracked background task, with an event sink
(:class:`EditorSink`) that feeds the session's view, progress and notifications, and an
approver (:class:`EditorApprover`) that parks stable bundles for the editor's decision. The
engine is entered (workspace lock, model clients) before ``startSession`` answers, so a
refusal (another Keel process is running, a missing API key) is the command's error rather
than a lost background failure. Cancelling the task aborts the session cleanly; its state
stays in the store for ``keel.server.resume`` or ``keel resume``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from lsprotocol import types as T

from keel.config import session_layer
from keel.engine import events as ev
from keel.engine.planner import PlanScope
from keel.engine.ports import ApprovalRequest, Decision, KeelError, Settlement
from keel.engine.records import SessionRecord
from keel.engine.session import SessionResult, new_session_id
from keel.lsp.args import ScopeArgs
from keel.lsp.bundles import BundleRegistry
from keel.lsp.client import ClientPort, Spawn
from keel.lsp.convert import uri_to_path
from keel.lsp.errors import failed, invalid
from keel.lsp.evidence import EditorEvidenceSource
from keel.lsp.progress import ProgressReporter
from keel.lsp.scoring import Scoring
from keel.lsp.views import NodeView, SessionView, hydrate
from keel.lsp.workspace import Workspace

log = logging.getLogger(__name__)


class EditorSink:
    """The engine's event sink for one session: view, progress, then a debounced refresh."""

    def __init__(
        self,
        view: SessionView,
        bundles: BundleRegistry,
        reporter: ProgressReporter,
        changed: Callable[[], None],
    ) -> None:
        self._view = view
        self._bundles, self._reporter, self._changed = bundles, reporter, changed

    def emit(self, event: ev.Event) -> None:
        view = self._view
        view.apply(event)
        if isinstance(event, ev.NodeCommitted | ev.BundlePartiallyCommitted):
            self._bundles.committed(event.ledger)
        done = sum(n.state == "committed" for n in view.nodes.values())
        self._reporter.on_event(view.id, event, done, len(view.nodes))
        self._changed()


class EditorApprover:
    """Approval through the editor: the bundle waits until a command decides it."""

    def __init__(
        self,
        session_id: str,
        bundles: BundleRegistry,
        scoring: Scoring,
        client: ClientPort,
        changed: Callable[[], None],
    ) -> None:
        self._session_id = session_id
        self._bundles, self._scoring, self._client = bundles, scoring, client
        self._changed = changed

    async def review(self, request: ApprovalRequest) -> Decision | None:
        bundle = self._bundles.propose(self._session_id, request)
        self._client.notify("keel/bundleProposed", self._scoring.bundle_payload(bundle).wire())
        self._changed()
        try:
            return await bundle.decision
        finally:  # a cancelled wait cancels the future too: the session stopped
            if bundle.decision.cancelled() or not bundle.decision.done():
                self._bundles.retire(bundle)
                self._changed()

    async def approve_command(self, node_id: str, command: str) -> bool:
        """Ask the user (``window/showMessageRequest``) before a command off the allow-list."""
        run, skip = T.MessageActionItem(title="Run it"), T.MessageActionItem(title="Don't run")
        params = T.ShowMessageRequestParams(
            type=T.MessageType.Warning,
            message=f"Keel: {node_id} wants to run `{command}` (not on the allow-list).",
            actions=[run, skip],
        )
        try:
            answer = await self._client.ask(params)
        except Exception as exc:
            log.warning("could not ask about `%s`: %s", command, exc)
            return False
        return answer is not None and answer.title == run.title

    async def settled(self, request: ApprovalRequest, settlement: Settlement) -> None:
        self._bundles.settle(request, settlement)
        self._changed()


class Sessions:
    """The sessions this server runs or has loaded: their views, start, resume and abort."""

    def __init__(
        self,
        *,
        views: dict[str, SessionView],
        workspace: Workspace,
        bundles: BundleRegistry,
        scoring: Scoring,
        reporter: ProgressReporter,
        client: ClientPort,
        evidence: EditorEvidenceSource,
        spawn: Spawn,
        changed: Callable[[], None],
    ) -> None:
        self.views = views
        #: The running sessions' tasks, by session id.
        self.runs: dict[str, asyncio.Task[Any]] = {}
        #: Sessions being resumed that are not yet in ``runs`` (entering the engine).
        self._resuming: set[str] = set()
        self._workspace, self._bundles, self._scoring = workspace, bundles, scoring
        self._reporter, self._client, self._evidence = reporter, client, evidence
        self._spawn, self._changed = spawn, changed

    def plan_scope(self, scope: ScopeArgs) -> PlanScope:
        """``startSession``'s ``scope`` as the planner's limits; a file outside the workspace is
        invalid."""
        paths = []
        for uri in scope.files:
            path = uri_to_path(uri, self._workspace.root) if self._workspace.root else None
            if path is None:
                raise invalid(f"scope file {uri} is not a file of the workspace")
            paths.append(path)
        return PlanScope(max_nodes=scope.max_nodes, must_own=tuple(paths))

    async def start(
        self,
        task: str,
        *,
        mode: str | None = None,
        scope: PlanScope | None = None,
        resume: SessionRecord | None = None,
    ) -> str:
        """Start (or, with a stored ``resume`` record, continue) a session; returns its id."""
        host = await self._workspace.host()
        if resume is not None:
            settings = await self._workspace.resolve_settings(session_layer(resume.config))
            session_id = resume.id
        else:
            settings = await self._workspace.resolve_settings(
                {"engine": {"mode": mode}} if mode else None
            )
            session_id = new_session_id()
        self._workspace.report_problems(settings.problems)
        engine_settings = settings.config.engine_settings(auto_approve=False)
        view = SessionView(session_id, task=task, mode=engine_settings.mode)
        view.epsilon, view.weights, view.running = (
            engine_settings.epsilon,
            engine_settings.weights,
            True,
        )
        if resume is not None and session_id in self.views:
            view.nodes = self.views[session_id].nodes
        sink = EditorSink(view, self._bundles, self._reporter, self._changed)
        approver = EditorApprover(
            session_id, self._bundles, self._scoring, self._client, self._changed
        )
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def run() -> SessionResult | None:
            try:
                async with host.engine(
                    task, settings.config, sink=sink, approver=approver
                ) as engine:
                    # The final sheaf check hears the editor's diagnostics of committed files.
                    engine = replace(engine, editor=self._evidence, plan_scope=scope)
                    started.set_result(None)
                    return await engine.run(task, session_id, resume=resume is not None)
            except Exception as exc:
                if started.done():
                    raise
                started.set_exception(exc)  # startSession reports it
                return None

        run_task = self._spawn(run(), name=f"session {session_id}")
        # The run can end before the engine began (the server shutting down cancels it): then
        # ``started`` is never resolved, so wait on the run as well.
        waiting: set[asyncio.Future[Any]] = {started, run_task}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            raise failed(f"session {session_id} was stopped before it began; nothing ran")
        started.result()  # the start's error, if any
        self.views.pop(session_id, None)
        self.views[session_id] = view
        self.runs[session_id] = run_task
        run_task.add_done_callback(lambda _: self._ended(view))
        return session_id

    def _ended(self, view: SessionView) -> None:
        self.runs.pop(view.id, None)
        view.running = False
        self._bundles.session_ended(view.id)
        self._reporter.end_session(view.id, view.outcome or "stopped")
        if not self._client.closing:
            self._changed()

    async def resume(self, session_id: str | None) -> str:
        host = await self._workspace.host()
        session_id = session_id or await host.store.latest_session_id()
        record = await host.store.session(session_id).record() if session_id else None
        if record is None:
            raise KeelError(
                f"no session {session_id} to resume" if session_id else "no session yet"
            )
        if record.id in self.runs or record.id in self._resuming:
            raise KeelError(f"session {record.id} is already running")
        self._resuming.add(record.id)
        try:
            return await self.start(record.task, resume=record)
        finally:
            self._resuming.discard(record.id)

    def abort(self, session_id: str | None = None) -> list[str]:
        """Cancel the running session(s): each ends ``aborted`` with its state stored."""
        ids = [session_id] if session_id else list(self.runs)
        aborted = []
        for sid in ids:
            run = self.runs.get(sid)
            if run is not None and not run.done():
                run.cancel("aborted from the editor")
                aborted.append(sid)
        return aborted

    async def abort_requested(self) -> list[str]:
        """Abort the running sessions that ``keel abort`` asked (in the store) to stop."""
        host = self._workspace.opened_host
        requested = []
        for session_id in list(self.runs):
            if host is not None and await host.store.session(session_id).abort_requested():
                requested.append(session_id)
                self.runs[session_id].cancel("aborted with keel abort")
        return requested

    async def stop_all(self, reason: str) -> None:
        """Cancel every running session and wait until each has stopped."""
        runs = list(self.runs.values())
        for run in runs:
            run.cancel(reason)
        if runs:
            await asyncio.gather(*runs, return_exceptions=True)

    def view_owning(self, path: str) -> tuple[SessionView, NodeView] | None:
        """The most recent session with a node that owns ``path``, and that node."""
        for view in reversed(list(self.views.values())):
            node = view.owner_of(path)
            if node is not None:
                return view, node
        return None

    async def load_latest(self) -> None:
        """After a (re)connect: the latest stored session's view, for status and hovers."""
        if not self._workspace.has_store():
            return  # Keel never ran here: do not create a repository or a store just to look
        store = (await self._workspace.host()).store
        session_id = await store.latest_session_id()
        if session_id is None or session_id in self.views:
            return
        records = store.session(session_id)
        record = await records.record()
        if record is None:
            return
        plan, nodes, attempts = await asyncio.gather(
            records.plan(), records.nodes(), records.attempts()
        )
        self.views.setdefault(session_id, hydrate(record, plan, nodes, attempts))
        self._changed()
