"""One node's life: sandbox, bundle, verification, correction, approval, commit.

Each attempt starts from a fresh sandbox exported from the last committed state, so a failed
attempt leaves nothing behind and a node never sees another node's uncommitted files. The
bundle is applied all-or-nothing; every problem with it (invalid JSON, bad paths, patches that
do not apply) becomes evidence for the next attempt, exactly like a failing test.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

from keel.bundles.apply import ChangeSet, plan_changes, write_changes
from keel.bundles.diff import change_set_diff
from keel.engine import prompts
from keel.engine.energy import measure
from keel.engine.events import EventLog
from keel.engine.gateway import ModelGateway
from keel.engine.models import (
    ArtifactBundle,
    CommandResult,
    Component,
    Energy,
    NodeState,
    PlanNode,
    Residual,
    SensorReport,
    Tier,
)
from keel.engine.ports import (
    ApprovalRequest,
    Approver,
    CommandRunner,
    ConflictError,
    Decision,
    LanguagePlugin,
    Ledger,
    SessionStore,
)
from keel.engine.settings import EngineSettings
from keel.engine.verifier import Verifier, analyse, evidence_dicts, read_texts


@dataclass
class Attempt:
    """What one attempt produced: its bundle (if valid), planned changes and energy."""

    number: int
    bundle: ArtifactBundle | None
    changes: ChangeSet | None
    energy: Energy

    def summary(self) -> str:
        if self.bundle is None:
            return "(no valid bundle)"
        b = self.bundle
        files = (
            [w.path for w in b.writes] + [d.path for d in b.diffs] + [f"-{p}" for p in b.deletes]
        )
        return f"files {', '.join(files) or '(none)'}; commands {', '.join(b.commands) or '(none)'}"


@dataclass(frozen=True)
class NodeContext:
    """What every node of a session shares."""

    session_id: str
    task: str
    workspace: Path
    settings: EngineSettings
    gateway: ModelGateway
    verifier: Verifier
    plugins: list[LanguagePlugin]
    ledger: Ledger
    store: SessionStore
    runner: CommandRunner
    approver: Approver
    events: EventLog
    hints: dict[str, list[str]]

    @property
    def sandbox_root(self) -> Path:
        return self.workspace / ".keel" / "sandboxes" / self.session_id


class NodeRunner:
    """Drives one node to a commit, an escalation, a failure or a wait for approval."""

    def __init__(self, ctx: NodeContext, node: PlanNode) -> None:
        self.ctx = ctx
        self.node = node
        self._feedback: str | None = None

    async def _state(self, state: NodeState, detail: str = "") -> None:
        await self.ctx.store.set_node_state(self.ctx.session_id, self.node.id, state.value, detail)

    async def run(self) -> NodeState:
        ctx, node = self.ctx, self.node
        await self._state(NodeState.RUNNING)
        await ctx.events.emit("node_started", node=node.id, title=node.title, kind=node.kind.value)
        previous: Attempt | None = None
        for number in range(1, ctx.settings.max_attempts + 1):
            correction = await self._correction(previous) if previous else None
            attempt = await self._attempt(number, correction)
            if attempt.energy.stable(ctx.settings.epsilon):
                outcome = await self._approve_and_commit(attempt)
                if outcome is not None:
                    return outcome
            previous = attempt
            if number < ctx.settings.max_attempts:
                await self._state(
                    NodeState.RETRYING, f"attempt {number} V={attempt.energy.total:.3f}"
                )
                await ctx.events.emit(
                    "node_retrying",
                    node=node.id,
                    attempt=number + 1,
                    v=round(attempt.energy.total, 6),
                )
        return await self._escalate(previous)

    async def _sandbox(self, number: int) -> Path:
        path = self.ctx.sandbox_root / self.node.id / str(number)
        await asyncio.to_thread(shutil.rmtree, path, True)
        path.mkdir(parents=True)
        await self.ctx.ledger.export(path)
        return path

    async def _attempt(self, number: int, correction: str | None) -> Attempt:
        ctx, node = self.ctx, self.node
        sandbox = await self._sandbox(number)
        try:
            owned = await asyncio.to_thread(read_texts, sandbox, node.owns)
            context = await asyncio.to_thread(read_texts, sandbox, node.context)
            prompt = prompts.actuator_prompt(
                ctx.task, node, owned, context, ctx.hints.get(node.id, []), correction
            )
            reply = await ctx.gateway.ask(
                Tier.ACTUATOR,
                ArtifactBundle,
                system=prompts.ACTUATOR_SYSTEM,
                prompt=prompt,
                node_id=node.id,
                attempt=number,
            )
            if reply.value is None:
                residual = Residual(Component.STR, reply.error or "invalid reply", "schema")
                attempt = Attempt(number, None, None, self._measure_only([residual]))
            else:
                attempt = await self._apply_and_verify(number, reply.value, sandbox)
        finally:
            await asyncio.to_thread(shutil.rmtree, sandbox, True)
        await self._record(attempt)
        return attempt

    def _measure_only(self, residuals: list[Residual]) -> Energy:
        return measure([SensorReport("bundle", tuple(residuals))], self.ctx.settings.weights)

    async def _apply_and_verify(
        self, number: int, bundle: ArtifactBundle, sandbox: Path
    ) -> Attempt:
        ctx, node = self.ctx, self.node
        changes = await asyncio.to_thread(plan_changes, sandbox, bundle, node.owns)
        await ctx.events.emit(
            "bundle_generated",
            node=node.id,
            attempt=number,
            files=sorted(changes.changes),
            commands=bundle.commands,
            problems=[p.message for p in changes.problems],
        )
        if not changes.ok:
            residuals = [
                Residual(Component.STR, p.message, "bundle", path=p.path) for p in changes.problems
            ]
            return Attempt(number, bundle, changes, self._measure_only(residuals))
        await asyncio.to_thread(write_changes, sandbox, changes.changes)
        await self._state(NodeState.VERIFYING, f"attempt {number}")
        results = [
            await self._run_command(cmd, sandbox) for cmd in [*node.commands, *bundle.commands]
        ]
        energy = await ctx.verifier.measure_node(node, sandbox, results)
        return Attempt(number, bundle, changes, energy)

    async def _run_command(self, command: str, sandbox: Path) -> CommandResult:
        ctx = self.ctx
        allowed = any(plugin.command_allowed(command) for plugin in ctx.plugins)
        if not allowed and not await ctx.approver.approve_command(self.node.id, command):
            reason = "not on the plugins' allow-list and not approved"
            return CommandResult(command, -1, "", refused=reason)
        return await ctx.runner.run(command, sandbox, timeout_s=ctx.settings.command_timeout_s)

    async def _record(self, attempt: Attempt) -> None:
        ctx, energy = self.ctx, attempt.energy
        stable = energy.stable(ctx.settings.epsilon)
        bundle = attempt.bundle.model_dump() if attempt.bundle else None
        evidence = evidence_dicts(energy.evidence)
        await ctx.store.record_attempt(
            ctx.session_id, self.node.id, attempt.number, bundle, energy.as_dict(), evidence, stable
        )
        await ctx.events.emit(
            "verification",
            node=self.node.id,
            attempt=attempt.number,
            **energy.as_dict(),
            epsilon=ctx.settings.epsilon,
            stable=stable,
            degraded=list(energy.degraded_sensors),
            evidence=evidence,
        )

    async def _correction(self, previous: Attempt) -> str:
        ctx = self.ctx
        report = await analyse(
            ctx.gateway, ctx.task, self.node, previous.summary(), previous.energy, previous.number
        )
        feedback, self._feedback = self._feedback, None
        return prompts.correction_block(
            previous.number + 1,
            previous.energy.evidence,
            report.analysis if report else None,
            report.fix_hints if report else [],
            feedback,
            previous.summary(),
        )

    def _complexity(self, attempt: Attempt) -> int:
        """Balanced mode's measure: files changed plus commands run (docs/explanation/energy.md)."""
        files = len(attempt.changes.changes) if attempt.changes else 0
        return files + len(attempt.bundle.commands if attempt.bundle else [])

    async def _approve_and_commit(self, attempt: Attempt) -> NodeState | None:
        """Commit if approved; ``None`` means rejected (try again), else the final state."""
        ctx, node = self.ctx, self.node
        assert attempt.changes is not None
        settings = ctx.settings
        complexity = self._complexity(attempt)
        approver_name = settings.mode
        if settings.needs_approval(complexity):
            await self._state(NodeState.AWAITING_APPROVAL)
            bundle_id = attempt.changes.content_hash()[:16]
            await ctx.events.emit(
                "awaiting_approval",
                node=node.id,
                bundle=bundle_id,
                complexity=complexity,
                files=sorted(attempt.changes.changes),
            )
            decision = await self._decide(
                ApprovalRequest(
                    ctx.session_id,
                    node.id,
                    node.title,
                    bundle_id,
                    change_set_diff(attempt.changes.changes, attempt.changes.base),
                    attempt.energy.as_dict(),
                    complexity,
                )
            )
            if decision is None:
                return NodeState.AWAITING_APPROVAL
            if not decision.approved:
                await ctx.store.record_approval(
                    ctx.session_id, node.id, "rejected", decision.actor, None, decision.feedback
                )
                self._feedback = f"The reviewer rejected the bundle. {decision.feedback}".strip()
                return None
            approver_name = decision.actor
        return await self._commit(attempt, approver_name)

    async def _decide(self, request: ApprovalRequest) -> Decision | None:
        if self.ctx.settings.auto_approve:
            return Decision(approved=True, actor="user", feedback="approved with -y")
        return await self.ctx.approver.review(request)

    async def _commit(self, attempt: Attempt, approved_by: str) -> NodeState:
        ctx, node = self.ctx, self.node
        assert attempt.changes is not None
        energy = attempt.energy.as_dict()
        trailers = {
            "Keel-Session": ctx.session_id,
            "Keel-Node": node.id,
            "Keel-Bundle": attempt.changes.content_hash(),
            "Keel-Energy": energy_trailer(energy),
            "Keel-Approved-By": approved_by,
        }
        try:
            sha = await ctx.ledger.commit(
                attempt.changes.changes, attempt.changes.base, f"keel: {node.title}", trailers
            )
        except ConflictError as exc:
            await self._state(NodeState.FAILED, str(exc))
            await ctx.events.emit("node_failed", node=node.id, reason=f"conflict: {exc}")
            return NodeState.FAILED
        await ctx.store.record_approval(ctx.session_id, node.id, "approved", approved_by, sha)
        await self._state(NodeState.COMMITTED, sha)
        await ctx.events.emit(
            "node_committed",
            node=node.id,
            ledger=sha,
            files=sorted(attempt.changes.changes),
            v=energy["v"],
        )
        return NodeState.COMMITTED

    async def _escalate(self, last: Attempt | None) -> NodeState:
        ctx, node = self.ctx, self.node
        energy = last.energy if last else None
        report: dict[str, object] = {
            "node": node.id,
            "title": node.title,
            "attempts": ctx.settings.max_attempts,
            "energy": energy.as_dict() if energy else {},
            "evidence": evidence_dicts(energy.evidence) if energy else [],
            "degraded": list(energy.degraded_sensors) if energy else [],
            "reason": "did not reach V < epsilon within the attempts",
        }
        await ctx.store.record_escalation(ctx.session_id, node.id, report)
        await self._state(NodeState.ESCALATED, str(report["reason"]))
        await ctx.events.emit("node_escalated", **report)
        return NodeState.ESCALATED


def energy_trailer(energy: dict[str, float]) -> str:
    """``V=0.000 syn=0.000 str=0.000 log=0.000 boot=0.000 sheaf=0.000`` for the ledger."""
    parts = [f"V={energy['v']:.3f}"]
    parts += [f"{c.value}={energy['v_' + c.value]:.3f}" for c in Component]
    return " ".join(parts)
