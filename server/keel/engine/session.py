"""A whole session: plan, speculate, run the DAG, check the sheaf, report the outcome.

The outcome is honest: ``success`` only when every node committed and the final sheaf check is
stable; ``partial`` when some nodes committed; ``failed`` when none did. A budget stop ends the
session cleanly with the reason, and the store keeps everything for ``keel status`` and
``keel logs``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from keel.engine import events as ev
from keel.engine import prompts
from keel.engine.baseline import STEP_ID as BASELINE_STEP
from keel.engine.baseline import Baseline, BaselineRecord
from keel.engine.bounds import chars_for
from keel.engine.events import EventLog
from keel.engine.gateway import BudgetExceeded, Exploration, ModelGateway, Totals
from keel.engine.instructions import load_instructions
from keel.engine.models import Energy, LedgerEntry, NodeKind, NodeState, SensorReport, Tier
from keel.engine.node import Attempt, NodeContext, NodeRunner
from keel.engine.planner import PlanningFailed, PlanScope
from keel.engine.planning import PreviousSession, draft_plan
from keel.engine.ports import (
    Approver,
    CommandRunner,
    EditorEvidence,
    EventSink,
    ExplorationTools,
    FaultPoint,
    KeelError,
    LanguagePlugin,
    Ledger,
    ModelClient,
    NoFaults,
    ProviderError,
    RepositoryContext,
    SessionRecords,
    SessionStore,
)
from keel.engine.redaction import Redactor
from keel.engine.replies import PlanNode, Speculation, TaskPlan
from keel.engine.scheduler import run_dag
from keel.engine.settings import EngineSettings
from keel.engine.verifier import Verifier, evidence_dicts


@dataclass
class SessionResult:
    """How a session ended; ``reason`` says why when it did not succeed."""

    session_id: str
    outcome: str
    nodes: dict[str, NodeState] = field(default_factory=dict)
    reason: str = ""
    budget_stop: bool = False
    totals: dict[str, object] = field(default_factory=dict)


def _uncancel() -> None:
    """An abort is an outcome, not an error: finish the session's records normally."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


def new_session_id() -> str:
    return "s-" + time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


@dataclass
class Engine:
    """Everything a session needs, injected by the composition root (``keel.app``)."""

    workspace: Path
    clients: Mapping[Tier, ModelClient]
    plugins: Sequence[LanguagePlugin]
    ledger: Ledger
    store: SessionStore
    runner: CommandRunner
    sink: EventSink
    approver: Approver
    settings: EngineSettings
    secrets: Mapping[str, str] = field(default_factory=dict)
    faults: FaultPoint = field(default_factory=NoFaults)
    #: The editor's diagnostics (``keel serve``); the final sheaf check counts them too.
    editor: EditorEvidence | None = None
    #: Limits on the plan beyond the contract's rules ("Fix with agent": one node).
    plan_scope: PlanScope | None = None
    #: Read-only tools the architect may call before it plans (``None``: it may not).
    explorer: ExplorationTools | None = None
    #: What confines the commands (``Sandbox.describe()``), said by session_started and status.
    sandbox: Mapping[str, object] = field(default_factory=lambda: {"mode": "off"})
    #: The project's environment per language (its interpreter, cargo's caches), JSON-ready;
    #: shown in ``session_started`` and ``keel status``.
    environment: Mapping[str, Any] = field(default_factory=dict)
    #: Problems found with it, each naming its fix: one ``warning`` event each.
    environment_notes: Sequence[str] = ()
    #: The ranked repository map the architect gets instead of a plain listing, and the
    #: outlines of the definitions a node's code uses for the actuator.
    context: RepositoryContext | None = None
    #: The finished session this one follows up (``continue``): the architect sees its plan,
    #: ledger entries and outcome; the stored configuration names it as ``continues``.
    previous: PreviousSession | None = None

    async def run(
        self, task: str, session_id: str | None = None, *, resume: bool = False
    ) -> SessionResult:
        """Run a session to its end; with ``resume``, continue a stored one.

        A resumed session replays every recorded model reply (no second request for an
        answered step), skips the nodes the ledger already holds, and keeps one account of
        tokens, cost and steps across runs. Cancelling the task aborts the session cleanly.
        """
        session_id = session_id or new_session_id()
        started = time.monotonic()
        redactor = Redactor(self.secrets)
        records = self.store.session(session_id)
        events = EventLog(session_id, records, self.sink, redactor)
        totals = Totals.restore(await records.call_totals()) if resume else Totals()
        max_tokens = self.settings.max_prompt_tokens
        instructions = await asyncio.to_thread(
            load_instructions, self.workspace, self.settings.instructions, chars_for(max_tokens)
        )
        gateway = ModelGateway(
            self.clients,
            records,
            budget=self.settings.budget,
            log_llm=self.settings.log_llm,
            redact=redactor,
            totals=totals,
            faults=self.faults,
            max_prompt_tokens=max_tokens,
            instructions=instructions.block(),
            max_reply_tokens=self.settings.max_reply_tokens,
        )
        if not resume:
            await records.create_session(task, self.config_record())
        else:
            # Budgets given to a resume are the session's from now on: status shows them and
            # a later plain resume keeps them (they equal the stored ones when none were given).
            budget = self.settings.budget
            await records.update_session_config(
                {
                    "max_cost": budget.max_cost,
                    "max_steps": budget.max_steps,
                    "sandbox": dict(self.sandbox),
                },
            )
        opened = ev.SessionResumed if resume else ev.SessionStarted
        await events.emit(
            opened(
                task=task,
                workspace=str(self.workspace),
                models={tier.value: client.name for tier, client in self.clients.items()},
                plugins=[p.name for p in self.plugins],
                mode=self.settings.mode,
                epsilon=self.settings.epsilon,
                sandbox=dict(self.sandbox),
                environment=dict(self.environment),
                instructions=[f.path for f in instructions.files],
            )
        )
        for note in [*self.environment_notes, *instructions.warnings]:
            await events.emit(ev.WarningEvent(message=note))
        run_id = await records.begin_run(os.getpid(), socket.gethostname())
        result = SessionResult(session_id, "failed")
        try:
            await self.ledger.check_ready()  # git mid-rebase or a detached HEAD: stop now
            await self._run(task, records, gateway, events, result, resume)
        except BudgetExceeded as exc:
            result.budget_stop, result.reason = True, str(exc)
            spent = gateway.totals
            await events.emit(
                ev.BudgetExceededEvent(
                    reason=exc.reason,
                    message=str(exc),
                    calls=spent.calls,
                    input_tokens=spent.input_tokens,
                    output_tokens=spent.output_tokens,
                    cost_usd=round(spent.cost_usd, 6),
                    unpriced=spent.unpriced,
                )
            )
            await self._requeue(records, f"stopped by the {exc.reason} budget")
        except KeelError as exc:  # no plan, an unreachable model, a failing disk or git
            result.reason = str(exc)
            await self._requeue(records, "the session stopped")
        except asyncio.CancelledError:
            _uncancel()
            result.outcome, result.reason = "aborted", "aborted by the user"
            await self._requeue(records, "aborted")
        finally:
            sandboxes = self.workspace / ".keel" / "sandboxes" / session_id
            await asyncio.to_thread(shutil.rmtree, sandboxes, True)
            await records.end_run(run_id)
        await self._finish(records, result, gateway, events, started)
        return result

    async def _requeue(self, records: SessionRecords, why: str) -> None:
        """Nodes cut off mid-work go back to ``queued``: a resume runs them again, and status
        must not show them running in a session that has stopped."""
        in_flight = {NodeState.RUNNING, NodeState.VERIFYING, NodeState.RETRYING}
        for node_id, state in (await records.node_states()).items():
            if state in in_flight:
                detail = f"{why} while {state}; `keel resume` runs it again"
                await records.set_node_state(node_id, NodeState.QUEUED, detail)

    async def _finish(
        self,
        records: SessionRecords,
        result: SessionResult,
        gateway: ModelGateway,
        events: EventLog,
        started: float,
    ) -> None:
        committed = sum(state is NodeState.COMMITTED for state in result.nodes.values())
        if result.outcome not in ("success", "aborted"):
            result.outcome = "partial" if committed else "failed"
        spent = gateway.totals
        totals = ev.SessionTotals(
            calls=spent.calls,
            input_tokens=spent.input_tokens,
            output_tokens=spent.output_tokens,
            cost_usd=round(spent.cost_usd, 6),
            unpriced=spent.unpriced,
            wall_time_s=round(time.monotonic() - started, 3),
            nodes=len(result.nodes),
            committed=committed,
        )
        result.totals = asdict(totals)
        await records.finish_session(result.outcome, {**result.totals, "reason": result.reason})
        await events.emit(
            ev.SessionFinished(
                outcome=result.outcome,
                reason=result.reason,
                budget_exceeded=result.budget_stop,
                totals=totals,
                nodes={node: state.value for node, state in result.nodes.items()},
            )
        )

    def config_record(self) -> dict[str, object]:
        s = self.settings
        return {
            "models": {tier.value: client.name for tier, client in self.clients.items()},
            "mode": s.mode,
            "complexity_k": s.complexity_k,
            "epsilon": s.epsilon,
            "weights": [
                s.weights.syn,
                s.weights.str,
                s.weights.log,
                s.weights.boot,
                s.weights.sheaf,
            ],
            "max_attempts": s.max_attempts,
            "defer_tests": s.defer_tests,
            "adopt_new_files": s.adopt_new_files,
            "max_cost": s.budget.max_cost,
            "max_steps": s.budget.max_steps,
            "auto_approve": s.auto_approve,
            "log_llm": s.log_llm,
            "sandbox": dict(self.sandbox),
            "environment": dict(self.environment),
            "explore_turns": s.explore_turns,
            "explore_tokens": s.explore_tokens,
            **({"continues": self.previous.session_id} if self.previous else {}),
        }

    async def _run(
        self,
        task: str,
        records: SessionRecords,
        gateway: ModelGateway,
        events: EventLog,
        result: SessionResult,
        resume: bool,
    ) -> None:
        session_id = records.session_id
        plan = await self._plan(task, records, gateway, events)
        result.nodes = {node.id: NodeState.QUEUED for node in plan.nodes}
        done = await self._committed_nodes(records, events) if resume else {}
        result.nodes.update(done)
        baseline = await self._baseline(plan, records, events, resume)
        hints = await self._speculate(task, plan, gateway, events)
        verifier = Verifier(
            self.plugins,
            self.settings.weights,
            defer_tests=self.settings.defer_tests,
            baseline=baseline,
        )
        ctx = NodeContext(
            session_id,
            task,
            self.workspace,
            self.settings,
            gateway,
            verifier,
            list(self.plugins),
            self.ledger,
            records,
            self.runner,
            self.approver,
            events,
            hints,
            faults=self.faults,
            repository=self.context,
            plan=plan,
        )

        last_attempt: dict[str, int] = {}

        async def run_node(node: PlanNode) -> NodeState:
            runner = NodeRunner(ctx, node)
            state = await runner.run()
            last_attempt[node.id] = runner.last_attempt
            result.nodes[node.id] = state
            return state

        async def blocked(node: PlanNode, state: NodeState, reason: str) -> None:
            result.nodes[node.id] = state
            await records.set_node_state(node.id, state.value, reason)
            stop = ev.NodeFailed if state is NodeState.FAILED else ev.NodeWaiting
            await events.emit(stop(node=node.id, reason=reason))

        try:
            result.nodes.update(await run_dag(plan.nodes, run_node, blocked, initial=done))
            if all(state is NodeState.COMMITTED for state in result.nodes.values()):
                sheaf = await self._sheaf(plan, ctx, events)
                stable = sheaf.stable(self.settings.epsilon)
                if not stable and self.settings.defer_tests:
                    stable = await self._reopen(plan, ctx, sheaf, last_attempt, blocked, result)
                result.outcome = "success" if stable else "partial"
                if not stable:
                    result.reason = "the final sheaf check is not stable"
            else:
                undone = [n for n, s in result.nodes.items() if s is not NodeState.COMMITTED]
                result.reason = "not committed: " + ", ".join(
                    f"{n} ({result.nodes[n].value})" for n in undone
                )
        finally:
            await ctx.removals.drain()  # before the session's sandboxes go, and it ends

    async def _committed_nodes(
        self, records: SessionRecords, events: EventLog
    ) -> dict[str, NodeState]:
        """Nodes of this session the ledger (git, the source of truth) already holds.

        A kill between a commit and its store records leaves the store behind git; those
        records (the approval's sha, the ``node_committed`` event, the state) are completed
        here from the commit itself, so status, the ledger and git agree. A commit of part
        of a bundle (some files or hunks) does not finish its node: the node runs again and
        proposes the rest.
        """
        session_id = records.session_id
        entries = [e for e in await self.ledger.entries(None) if e.session == session_id]
        await self.ledger.settle_index([path for e in entries for path in e.files])
        latest: dict[str, LedgerEntry] = {}
        for entry in entries:  # newest first
            latest.setdefault(entry.node, entry)
        states = await records.node_states()
        done: dict[str, NodeState] = {}
        for node_id, entry in latest.items():
            if states.get(node_id) == NodeState.COMMITTED:
                done[node_id] = NodeState.COMMITTED
                continue
            approval = await records.confirm_approval(node_id, entry.sha, entry.approved_by)
            if approval.partial:
                continue
            done[node_id] = NodeState.COMMITTED
            await events.emit(
                ev.NodeCommitted(
                    node=node_id,
                    ledger=entry.sha,
                    files=list(entry.files),
                    v=trailer_v(entry.energy),
                    recovered=True,
                )
            )
            await records.set_node_state(node_id, NodeState.COMMITTED, entry.sha)
        return done

    def _exploration(self, events: EventLog) -> Exploration | None:
        """The architect's tools and budget; every call run is an ``explore`` event."""
        settings = self.settings
        if self.explorer is None or settings.explore_turns <= 0 or settings.explore_tokens <= 0:
            return None

        async def explored(record: Mapping[str, object]) -> None:
            await events.emit(
                ev.parse_event(
                    {"type": ev.EventKind.EXPLORE}
                    | {key: record[key] for key in ev.json_keys(ev.Explore)}
                )
            )

        return Exploration(
            self.explorer,
            max_turns=self.settings.explore_turns,
            max_tokens=self.settings.explore_tokens,
            on_call=explored,
        )

    async def _plan(
        self, task: str, records: SessionRecords, gateway: ModelGateway, events: EventLog
    ) -> TaskPlan:
        def invalid(attempt: int, errors: list[str]) -> None:
            # Printed only, not stored; redacted like every event, since errors quote the reply.
            scrubbed = [events.redact(error) for error in errors]
            self.sink.emit(ev.PlanInvalid(attempt=attempt, errors=scrubbed))

        repaired: list[ev.PlanRepaired] = []

        def repairs(attempt: int, done: list[str]) -> None:
            repaired.append(ev.PlanRepaired(attempt=attempt, repairs=list(done)))

        try:
            plan = await draft_plan(
                self.workspace,
                gateway,
                self.plugins,
                task,
                invalid,
                self.plan_scope,
                context=self.context,
                map_tokens=self.settings.map_tokens,
                explore=self._exploration(events),
                previous=self.previous,
                on_repaired=repairs,
            )
        except PlanningFailed as exc:
            await events.emit(ev.PlanFailed(reason=str(exc)))
            raise
        for event in repaired:
            await events.emit(event)
        await records.record_plan(plan.model_dump(mode="json"))
        await events.emit(
            ev.PlanReady(
                nodes=[
                    ev.PlannedNode(n.id, n.title, n.kind.value, n.owns, n.depends_on)
                    for n in plan.nodes
                ]
            )
        )
        return plan

    async def _speculate(
        self, task: str, plan: TaskPlan, gateway: ModelGateway, events: EventLog
    ) -> dict[str, list[str]]:
        """The speculator's look-ahead hints per node; advisory, so a failure only warns."""
        if not self.settings.speculate:
            return {}
        try:
            reply = await gateway.ask(
                Tier.SPECULATOR,
                Speculation,
                system=prompts.SPECULATOR_SYSTEM,
                prompt=prompts.speculator_prompt(task, plan.nodes),
                node_id=None,
                attempt=1,
            )
        except ProviderError as exc:
            await events.emit(ev.WarningEvent(message=f"speculator unavailable: {exc}"))
            return {}
        hints: dict[str, list[str]] = {}
        for hint in reply.value.hints if reply.value else []:
            hints.setdefault(hint.node, []).append(hint.note)
        return hints

    async def _reopen(
        self,
        plan: TaskPlan,
        ctx: NodeContext,
        sheaf: Energy,
        last_attempt: Mapping[str, int],
        blocked: Callable[[PlanNode, NodeState, str], Awaitable[None]],
        result: SessionResult,
    ) -> bool:
        """``--defer-tests``: the sheaf's failing tests reopen the nodes responsible, once.

        Responsible are the node owning each failing test's file and the code nodes it
        depends on. They run again, now with tests, starting from the sheaf's evidence; then
        the sheaf check runs again.
        """
        reopened = responsible_nodes(plan, sheaf)
        if not reopened:
            return False
        await ctx.events.emit(
            ev.NodesReopened(nodes=[n.id for n in reopened], v_sheaf=round(sheaf.total, 6))
        )
        checking = replace(
            ctx,
            verifier=Verifier(
                self.plugins,
                self.settings.weights,
                defer_tests=False,
                baseline=ctx.verifier.baseline,
            ),
        )

        async def rerun(node: PlanNode) -> NodeState:
            first = last_attempt.get(node.id, self.settings.max_attempts) + 1
            previous = Attempt(first - 1, None, None, sheaf)
            state = await NodeRunner(
                checking, node, first_attempt=first, reopened_by=previous
            ).run()
            result.nodes[node.id] = state
            return state

        others = {n.id: NodeState.COMMITTED for n in plan.nodes if n not in reopened}
        result.nodes.update(await run_dag(reopened, rerun, blocked, initial=others))
        if not all(state is NodeState.COMMITTED for state in result.nodes.values()):
            return False
        return (await self._sheaf(plan, ctx, ctx.events)).stable(self.settings.epsilon)

    async def _baseline(
        self, plan: TaskPlan, records: SessionRecords, events: EventLog, resume: bool
    ) -> Baseline | None:
        """Measure (or reuse) the workspace at HEAD before the first node; see
        :mod:`keel.engine.baseline`. A resumed session keeps the baseline of its first run."""
        environment = json.dumps(
            {"plugins": [p.name for p in self.plugins], **self.environment}, sort_keys=True
        )
        recorded = await records.step_result(BASELINE_STEP) if resume else None
        if recorded is not None:
            head = recorded.get("head")
            if not isinstance(head, str):
                return None
            record = BaselineRecord.load(await self.store.baseline(head, environment))
            kept = record.baseline(head, reused=True) if record else Baseline(head, reused=True)
            await self._emit_baseline(events, kept, sorted(record.checked) if record else [], [])
            return kept
        head = await self.ledger.head()
        await records.begin_step(BASELINE_STEP, "baseline", {})
        if head is None:
            await records.finish_step(BASELINE_STEP, {"head": None})
            await self._emit_baseline(events, None, [], [])
            return None
        files = sorted({path for node in plan.nodes for path in node.owns})
        record = BaselineRecord.load(await self.store.baseline(head, environment))
        reused = record is not None and record.tested
        measured = [f for f in files if record is None or f not in record.checked]
        if not reused or measured:
            record = await self._measure_baseline(records.session_id, files, record)
            await self.store.record_baseline(head, environment, record.dump())
        assert record is not None
        await records.finish_step(BASELINE_STEP, {"head": head})
        baseline = record.baseline(head, reused=reused)
        await self._emit_baseline(events, baseline, sorted(record.checked), measured)
        return baseline

    @staticmethod
    async def _emit_baseline(
        events: EventLog,
        baseline: Baseline | None,
        files: Sequence[str],
        measured: Sequence[str],
    ) -> None:
        """The ``baseline`` event; ``None``: a repository without a commit to measure."""
        marked = (
            [replace(r, baseline=baseline.head) for r in baseline.residuals] if baseline else []
        )
        await events.emit(
            ev.BaselineEvent(
                head=baseline.head if baseline else None,
                reused=baseline.reused if baseline else False,
                files=list(files),
                measured=list(measured),
                failing=len(marked),
                degraded=list(baseline.degraded) if baseline else [],
                evidence=evidence_dicts(marked),
            )
        )

    async def _measure_baseline(
        self, session_id: str, files: Sequence[str], record: BaselineRecord | None
    ) -> BaselineRecord:
        """Add to ``record`` (or a new one) what HEAD's tree shows for ``files``."""
        record = record or BaselineRecord.empty()
        sandbox = self.workspace / ".keel" / "sandboxes" / session_id / "baseline"
        await asyncio.to_thread(shutil.rmtree, sandbox, True)
        sandbox.mkdir(parents=True)
        try:
            await self.ledger.export(sandbox)
            wanted = [f for f in files if f not in record.checked]
            present = [f for f in wanted if await asyncio.to_thread((sandbox / f).is_file)]
            verifier = Verifier(self.plugins, self.settings.weights, defer_tests=False)
            tests, boot, checks = await verifier.measure_baseline(
                sandbox, present, with_tests=not record.tested
            )
        finally:
            await asyncio.to_thread(shutil.rmtree, sandbox, True)
        if not record.tested:
            record.tested = True
            record.tests = _kept_evidence(tests)
            record.boot = _kept_evidence(boot)
        record.degraded += [r.sensor for r in [*tests, *boot, *checks] if r.degraded]
        for path in wanted:
            record.checked[path] = []
        for item in _kept_evidence(checks):
            path = str(item.get("path") or "")
            record.checked.setdefault(path if path in record.checked else "", []).append(item)
        return record

    async def _sheaf(self, plan: TaskPlan, ctx: NodeContext, events: EventLog) -> Energy:
        sandbox = ctx.sandbox_root / "sheaf"
        await asyncio.to_thread(shutil.rmtree, sandbox, True)
        sandbox.mkdir(parents=True)
        await self.ledger.export(sandbox)
        files = sorted(
            {path for node in plan.nodes for path in node.owns if (sandbox / path).exists()}
        )
        editor = [await self.editor.diagnostics(sandbox, files)] if self.editor else []
        energy = await ctx.verifier.sheaf(sandbox, files, editor)
        stable = energy.stable(self.settings.epsilon)
        await events.emit(
            ev.verification(
                energy,
                node=None,
                stage="sheaf",
                epsilon=self.settings.epsilon,
                stable=stable,
                evidence=evidence_dicts(energy.evidence),
            )
        )
        return energy


def _kept_evidence(reports: Sequence[SensorReport]) -> list[dict[str, object]]:
    """The residuals of the reports that measured (a degraded sensor's are not a baseline)."""
    return evidence_dicts(r for report in reports if not report.degraded for r in report.residuals)


def trailer_v(energy: str) -> float | None:
    """V from a ``Keel-Energy`` trailer (``V=0.000 syn=0.000 ...``), None if it has none."""
    for part in energy.split():
        name, _, value = part.partition("=")
        if name == "V":
            try:
                return float(value)
            except ValueError:
                return None
    return None


def responsible_nodes(plan: TaskPlan, sheaf: Energy) -> list[PlanNode]:
    """The nodes to reopen for the sheaf's failing tests, in plan order."""
    owner = {path: node for node in plan.nodes for path in node.owns}
    by_id = {node.id: node for node in plan.nodes}
    chosen: set[str] = set()
    for residual in sheaf.evidence:
        if residual.test_id is None or residual.baseline is not None:
            continue
        test_node = owner.get(residual.test_id.split("::", 1)[0])
        if test_node is None:
            continue
        chosen.add(test_node.id)
        chosen.update(d for d in test_node.depends_on if by_id[d].kind is NodeKind.CODE)
    return [node for node in plan.nodes if node.id in chosen]
