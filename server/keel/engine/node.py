"""One node's life: sandbox, bundle, verification, correction, approval, commit.

Each attempt starts from a fresh sandbox exported from the last committed state, so a node
never sees another node's uncommitted files. A correction builds on the attempt before it: the
files that attempt changed are written over the committed state, shown to the model as they
stand, and what the new bundle leaves out keeps them (a small model's second attempt used to
drop the test its first one got right). A bundle that cannot be applied, or one the reviewer
rejected, leaves nothing behind. The bundle is applied all-or-nothing; every problem with it
(invalid JSON, bad paths, patches that do not apply) becomes evidence for the next attempt,
exactly like a failing test.

Some bundles are verified again without asking the model: the rest of a bundle after the
reviewer approved only some of its files or hunks, what is left after the reviewer rejected
some hunks, and a bundle re-based onto the user's edits when the user changed one of its files
meanwhile. Those carry no new model attempt. Hunks a reviewer approves are verified as a
bundle of their own before they are committed (a subset can break what the whole passed).
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from keel.bundles.apply import (
    ChangeSet,
    compose,
    normalizes_into,
    plan_changes,
    write_changes,
)
from keel.bundles.diff import change_set_diff
from keel.bundles.hunks import bundle_hunks, split, unknown_ids
from keel.bundles.paths import PathError
from keel.engine import events as ev
from keel.engine import prompts
from keel.engine.bounds import CHARS_PER_TOKEN, MIN_SHOWN, UNBOUNDED_FILE_CHARS, bound_reason
from keel.engine.energy import measure
from keel.engine.events import EventLog
from keel.engine.gateway import ModelGateway
from keel.engine.guard import check_plan_path, read_for_prompt
from keel.engine.models import (
    CommandResult,
    Component,
    Energy,
    NodeState,
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
    FaultPoint,
    LanguagePlugin,
    Ledger,
    LedgerRefused,
    NoFaults,
    RepositoryContext,
    SessionRecords,
    Settlement,
)
from keel.engine.records import AttemptRecord, hunks_note
from keel.engine.repair import command_files, is_test_path, owner_of
from keel.engine.replies import ArtifactBundle, PlanNode, TaskPlan
from keel.engine.settings import MODES, EngineSettings
from keel.engine.verifier import Verifier, analyse, evidence_dicts

#: The evidence for a bundle that changes no file.
NOTHING_CHANGED = Residual(
    Component.STR,
    "the bundle changes no file: it has no write, diff or deletion that changes anything. "
    "Write the files this node must change, with the change",
    "bundle",
)


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
        files = sorted(self.changes.changes) if self.changes else []
        commands = ", ".join(self.bundle.commands) or "(none)"
        return f"files {', '.join(files) or '(none)'}; commands {commands}"


class Removals:
    """Sandboxes deleted off the node's path: a finished attempt's sandbox is removed in a
    worker thread while the node goes on (its record, the next model call); the session waits
    for every removal before it removes the session's sandbox directory and ends. A path is
    made again only once its removal is over (:meth:`settled`): a node run again in the same
    session numbers its sandboxes from 1 again."""

    def __init__(self) -> None:
        self._pending: dict[Path, asyncio.Future[None]] = {}

    def remove(self, path: Path) -> None:
        removal = asyncio.ensure_future(asyncio.to_thread(shutil.rmtree, path, True))
        self._pending[path] = removal

        def done(_: asyncio.Future[None]) -> None:
            if self._pending.get(path) is removal:
                del self._pending[path]

        removal.add_done_callback(done)

    async def settled(self, path: Path) -> None:
        """Wait until no removal of ``path`` is under way."""
        while (removal := self._pending.get(path)) is not None:
            await asyncio.gather(removal, return_exceptions=True)

    async def drain(self) -> None:
        """Wait for every removal started so far (a removal never fails: errors are ignored)."""
        while self._pending:
            await asyncio.gather(*self._pending.values(), return_exceptions=True)


def _fresh_directory(path: Path) -> None:
    """``path`` as a new, empty directory (whatever a killed run left there removed)."""
    shutil.rmtree(path, True)
    path.mkdir(parents=True)


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
    store: SessionRecords
    runner: CommandRunner
    approver: Approver
    events: EventLog
    hints: dict[str, list[str]] = field(default_factory=dict)
    faults: FaultPoint = field(default_factory=NoFaults)
    #: Outlines of what the owned code uses from other files (the repository map), if any.
    repository: RepositoryContext | None = None
    #: Finished sandboxes being deleted; the session drains it before it ends.
    removals: Removals = field(default_factory=Removals)
    #: The session's plan, whose nodes' ``owns`` say who may write what; with it, a bundle
    #: creating a file no node owns adopts it (docs/explanation/plan-repair.md).
    plan: TaskPlan | None = None

    @property
    def sandbox_root(self) -> Path:
        return self.workspace / ".keel" / "sandboxes" / self.session_id


class NodeRunner:
    """Drives one node to a commit, an escalation, a failure or a wait for approval."""

    def __init__(
        self,
        ctx: NodeContext,
        node: PlanNode,
        *,
        first_attempt: int = 1,
        reopened_by: Attempt | None = None,
    ) -> None:
        """``reopened_by``: a committed node is reopened with this evidence (deferred tests)."""
        self.ctx = ctx
        self.node = node
        self.first_attempt = first_attempt
        self.last_attempt = first_attempt - 1
        self._reopened_by = reopened_by
        self._feedback: str | None = None
        # The user's current content of owned files they edited since the last commit; laid
        # over every later sandbox so new bundles are made against it.
        self._overlay: dict[str, bytes | None] = {}
        # What the last applied attempt changed, against the committed state: the next
        # attempt's sandbox starts with it (none after a rejection, or once committed).
        self._progress: ChangeSet | None = None
        # The proposal a reviewer asked to correct: the next attempt's progress.
        self._corrected: ChangeSet | None = None
        self._checks = 0
        # The id and base of the bundle last proposed (a new base gives a new id).
        self._proposed: tuple[str, dict[str, bytes | None]] | None = None
        # What is left of a bundle the reviewer decided hunk by hunk goes back to them,
        # whatever the mode's policy would say of it alone.
        self._hunks_left = False

    async def _state(self, state: NodeState, detail: str = "") -> None:
        await self.ctx.store.set_node_state(self.node.id, state.value, detail)

    async def run(self) -> NodeState:
        ctx, node = self.ctx, self.node
        await self._state(NodeState.RUNNING)
        await ctx.events.emit(ev.NodeStarted(node=node.id, title=node.title, kind=node.kind.value))
        previous: Attempt | None = self._reopened_by
        last = self.first_attempt + ctx.settings.max_attempts - 1
        for number in range(self.first_attempt, last + 1):
            self.last_attempt = number
            correction = await self._correction(previous) if previous else None
            attempt = await self._attempt(number, correction)
            rejected = False
            while attempt.energy.stable(ctx.settings.epsilon):
                outcome = await self._approve_and_commit(attempt)
                if isinstance(outcome, NodeState):
                    return outcome
                if outcome is None:
                    rejected = True  # the next model attempt hears why
                    break
                attempt = await self._reverify(attempt, outcome)
            if rejected:  # it starts afresh, or from the proposal a reviewer corrected
                self._progress, self._corrected = self._corrected, None
            elif attempt.changes is not None and attempt.changes.ok:
                self._progress = attempt.changes
            previous = attempt
            if number < last:
                total = attempt.energy.total
                await self._state(NodeState.RETRYING, f"attempt {number} V={total:.3f}")
                await ctx.events.emit(
                    ev.NodeRetrying(node=node.id, attempt=number + 1, v=round(total, 6))
                )
        return await self._escalate(previous)

    # -- attempts ------------------------------------------------------------------------

    async def _sandbox(self, *, progress: bool = False) -> Path:
        """A fresh copy of the committed state (with the user's edits), and the last
        attempt's changes too when ``progress``."""
        self._checks += 1
        path = self.ctx.sandbox_root / self.node.id / str(self._checks)
        await self.ctx.removals.settled(path)
        await asyncio.to_thread(_fresh_directory, path)
        await self.ctx.ledger.export(path)
        if self._overlay:
            await asyncio.to_thread(write_changes, path, self._overlay, durable=False)
        if progress and self._progress is not None and self._progress.changes:
            await asyncio.to_thread(write_changes, path, self._progress.changes, durable=False)
        return path

    async def _attempt(self, number: int, correction: str | None) -> Attempt:
        ctx, node = self.ctx, self.node
        self._hunks_left = False
        sandbox = await self._sandbox(progress=True)
        try:
            prompt = await self._prompt(sandbox, correction)
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
            ctx.removals.remove(sandbox)
        await self._record(attempt)
        return attempt

    async def _prompt(self, sandbox: Path, correction: str | None) -> str:
        """The actuator's prompt: owned files, context files and the definitions the owned
        code uses, read through the guard and fitted to the prompt bound."""
        ctx, node = self.ctx, self.node
        room = ctx.gateway.prompt_room(prompts.ACTUATOR_SYSTEM)
        limit = UNBOUNDED_FILE_CHARS if room is None else room
        owned = await asyncio.to_thread(read_for_prompt, sandbox, node.owns, limit)
        context = await asyncio.to_thread(read_for_prompt, sandbox, node.context, limit)
        hints = ctx.hints.get(node.id, [])
        reason = bound_reason(ctx.settings.max_prompt_tokens)

        def build(definitions: str = "") -> str:
            return prompts.actuator_prompt(
                ctx.task,
                node,
                owned,
                context,
                hints,
                correction,
                definitions=definitions,
                room=room,
                reason=reason,
                adopt=ctx.settings.adopt_new_files,
            )

        prompt = build()
        # What is left, less the section's title and header, is the outlines' budget.
        overhead = len(prompts.DEFINITIONS) + 80
        spare = (limit - len(prompt) - overhead) // CHARS_PER_TOKEN
        # The outlines come from the repository map, which knows committed files only.
        created = self._progress.created() if self._progress is not None else set()
        existing = [f.path for f in owned if f.text is not None and f.path not in created]
        if ctx.repository is None or not existing or spare * CHARS_PER_TOKEN < MIN_SHOWN:
            return prompt
        try:
            definitions = await ctx.repository.related_definitions(existing, budget_tokens=spare)
        except Exception as exc:  # advice: without the outlines the prompt still stands
            await ctx.events.emit(ev.WarningEvent(message=f"definitions for {node.id}: {exc}"))
            return prompt
        return build(definitions) if definitions.strip() else prompt

    async def _reverify(self, attempt: Attempt, carried: ChangeSet) -> Attempt:
        """Verify ``carried`` (no model call) in a fresh sandbox of the new committed state."""
        energy = await self._verify_carried(attempt, carried)
        again = Attempt(attempt.number, attempt.bundle, carried, energy)
        await self._record(again)
        return again

    async def _verify_carried(self, attempt: Attempt, carried: ChangeSet) -> Energy:
        """The energy of ``carried`` written over the committed state, with the attempt's
        commands run again (no model call)."""
        sandbox = await self._sandbox()
        try:
            await asyncio.to_thread(write_changes, sandbox, carried.changes, durable=False)
            assert attempt.bundle is not None
            results = await self._run_commands(attempt.bundle, sandbox)
            return await self.ctx.verifier.measure_node(
                self.node, sandbox, results, _deleted(carried)
            )
        finally:
            self.ctx.removals.remove(sandbox)

    def _measure_only(self, residuals: list[Residual]) -> Energy:
        return measure([SensorReport("bundle", tuple(residuals))], self.ctx.settings.weights)

    async def _apply_and_verify(
        self, number: int, bundle: ArtifactBundle, sandbox: Path
    ) -> Attempt:
        ctx, node = self.ctx, self.node
        await self._adopt(number, bundle, sandbox)
        changes = await asyncio.to_thread(plan_changes, sandbox, bundle, node.owns)
        dropped = self._contradicting_deletes(bundle, changes)
        if dropped:  # the rest of the bundle stands without them
            kept = [raw for raw in bundle.deletes if not normalizes_into(raw, dropped)]
            bundle = bundle.model_copy(update={"deletes": kept})
            changes = await asyncio.to_thread(plan_changes, sandbox, bundle, node.owns)
            for path, why in dropped.items():
                message = f"{node.id} attempt {number}: the deletion of {path} was dropped: {why}"
                await ctx.events.emit(ev.WarningEvent(message=message))
        await ctx.events.emit(
            ev.BundleGenerated(
                node=node.id,
                attempt=number,
                files=sorted(changes.changes),
                commands=bundle.commands,
                problems=[p.message for p in changes.problems],
            )
        )
        if not changes.ok:
            residuals = [
                Residual(Component.STR, p.message, "bundle", path=p.path) for p in changes.problems
            ]
            return Attempt(number, bundle, changes, self._measure_only(residuals))
        try:
            await asyncio.to_thread(write_changes, sandbox, changes.changes, durable=False)
        except OSError as exc:  # what the checks before could not foresee: evidence too
            where = str(exc.filename or "a file")
            message = f"cannot write {where}: {exc.strerror or exc}"
            residual = Residual(Component.STR, message, "bundle")
            return Attempt(number, bundle, changes, self._measure_only([residual]))
        if self._progress is not None:  # the sandbox held the last attempt's changes
            changes = compose(self._progress, changes)
        # An empty bundle is verified like any other, and is never stable: its approval would
        # commit nothing and leave the node to ask again, forever.
        empty = [] if changes.changes else [SensorReport("bundle", (NOTHING_CHANGED,))]
        await self._state(NodeState.VERIFYING, f"attempt {number}")
        results = await self._run_commands(bundle, sandbox)
        ctx.faults.hit("node_commands_run")
        energy = await ctx.verifier.measure_node(node, sandbox, results, _deleted(changes), empty)
        return Attempt(number, bundle, changes, energy)

    def _contradicting_deletes(self, bundle: ArtifactBundle, changes: ChangeSet) -> dict[str, str]:
        """Deletions that cannot be meant, each with why: a file the node's own commands run,
        and a file only an earlier attempt created (owned, so it must exist: the contract
        would miss it). Small models delete a file to "start over", or list the file they
        leave alone; the deletion is dropped and the rest of the bundle stands."""
        gone = {path for path, data in changes.changes.items() if data is None}
        reasons: dict[str, str] = {}
        for command in dict.fromkeys([*self.node.commands, *bundle.commands]):
            for path in command_files(command):
                if path in gone and path not in reasons:
                    reasons[path] = f"the command `{command}` runs it"
        created = self._progress.created() if self._progress is not None else set()
        for path in sorted(gone & created):
            reasons.setdefault(path, "the last attempt created it and this node owns it")
        return reasons

    async def _adopt(self, number: int, bundle: ArtifactBundle, sandbox: Path) -> None:
        """The files ``bundle`` creates that no node of the plan owns become this node's.

        Only a whole-file write of a path that exists neither in the sandbox (the committed
        state) nor in the workspace (an untracked file of the user's) is adopted, and only
        while no node owns it or a folder it is in: a file another node owns, or one the
        plan never named that already exists, is still refused.
        """
        ctx, node, plan = self.ctx, self.node, self.ctx.plan
        if plan is None or not ctx.settings.adopt_new_files:
            return
        candidates = await asyncio.to_thread(
            _new_files, [w.path for w in bundle.writes], sandbox, ctx.workspace
        )
        adopted = []
        for path in candidates:  # no await between the check and the claim: one owner
            if owner_of(path, plan.nodes) is None:
                node.owns.append(path)
                adopted.append(path)
        for path in adopted:
            await ctx.events.emit(ev.FileAdopted(node=node.id, attempt=number, path=path))
        if adopted:
            await ctx.store.record_plan(plan.model_dump(mode="json"))

    async def _run_commands(self, bundle: ArtifactBundle, sandbox: Path) -> list[CommandResult]:
        commands = dict.fromkeys([*self.node.commands, *bundle.commands])  # each runs once
        return [await self._run_command(c, sandbox) for c in commands]

    async def _run_command(self, command: str, sandbox: Path) -> CommandResult:
        ctx = self.ctx
        missing = await asyncio.to_thread(_missing_tests, command, sandbox)
        if missing:
            return CommandResult(command, -1, "", refused=self._unwritten(missing))
        allowed = any(plugin.command_allowed(command) for plugin in ctx.plugins)
        if not allowed and not await ctx.approver.approve_command(self.node.id, command):
            reason = "not on the plugins' allow-list and not approved"
            return CommandResult(command, -1, "", refused=reason)
        return await ctx.runner.run(command, sandbox, timeout_s=ctx.settings.command_timeout_s)

    def _unwritten(self, missing: list[str]) -> str:
        """What to do about a command that runs test files nobody has written."""
        plan, node = self.ctx.plan, self.node
        path = missing[0]
        owner = owner_of(path, plan.nodes) if plan is not None else None
        if owner == node.id:
            return (
                f"it runs {path}, which does not exist: put {path} in this bundle's writes "
                "with its full content (this node owns it)"
            )
        if owner is None and self.ctx.settings.adopt_new_files:
            return (
                f"it runs {path}, which does not exist: put {path} in this bundle's writes "
                "with its full content (no node owns it: it becomes this node's), or drop "
                "the command"
            )
        if owner is None:
            return (
                f"it runs {path}, which does not exist and which no node owns: drop the "
                "command, or run a test file this node owns"
            )
        return (
            f"it runs {path}, which does not exist yet and which {owner} writes: drop the "
            f"command ({owner} runs it)"
        )

    async def _record(self, attempt: Attempt) -> None:
        ctx, energy = self.ctx, attempt.energy
        stable = energy.stable(ctx.settings.epsilon)
        bundle = attempt.bundle.model_dump() if attempt.bundle else None
        evidence = evidence_dicts(energy.evidence)
        await ctx.store.record_attempt(
            AttemptRecord(self.node.id, attempt.number, bundle, energy.as_dict(), evidence, stable)
        )
        await ctx.events.emit(
            ev.verification(
                energy,
                node=self.node.id,
                attempt=attempt.number,
                epsilon=ctx.settings.epsilon,
                stable=stable,
                evidence=evidence,
            )
        )

    async def _correction(self, previous: Attempt) -> str:
        ctx = self.ctx
        summary = previous.summary()
        # The files as the attempt left them; an unapplied bundle left the last ones standing.
        applied = previous.changes is not None and previous.changes.ok
        left = previous.changes if applied else self._progress
        report = await analyse(
            ctx.gateway,
            ctx.task,
            self.node,
            summary,
            previous.energy,
            previous.number,
            left.changes if left is not None else None,
            bound_reason(ctx.settings.max_prompt_tokens),
        )
        feedback, self._feedback = self._feedback, None
        return prompts.correction_block(
            previous.number + 1,
            previous.energy.evidence,
            report.analysis if report else None,
            report.fix_hints if report else [],
            feedback,
            summary,
            sorted(self._progress.changes) if self._progress is not None else (),
        )

    # -- approval and commit -------------------------------------------------------------

    async def _approve_and_commit(self, attempt: Attempt) -> NodeState | ChangeSet | None:
        """Commit if approved.

        Returns the node's final state, ``None`` when the reviewer rejected the bundle (the
        next attempt hears why), or a change set to verify again before proposing it: the
        files left after a partial approval, or the bundle re-based onto the user's edits.
        """
        ctx, node = self.ctx, self.node
        changes = attempt.changes
        assert changes is not None
        changed = changes.changed()
        if changed.changes:  # files written as they already stand are not proposed
            changes = changed
            attempt = replace(attempt, changes=changes)
        bundle_id = changes.content_hash()[:16]
        last = self._proposed
        if last is not None and last[0] == bundle_id and last[1] != changes.base:
            # The same proposal on a new base (what is left once some of its hunks were
            # committed) is a new bundle: its id covers the base too.
            bundle_id = _based_id(changes)
        self._proposed = (bundle_id, dict(changes.base))
        request = ApprovalRequest(
            ctx.session_id,
            node.id,
            node.title,
            bundle_id,
            change_set_diff(changes.changes, changes.base),
            attempt.energy.as_dict(),
            complexity(node, attempt),
            changes=dict(changes.changes),
            base=dict(changes.base),
            evidence=evidence_dicts(attempt.energy.evidence),
            owns=list(node.owns),
        )
        ask = ctx.settings.needs_approval(request.complexity) or self._hunks_left
        self._hunks_left = False
        recorded = await self._recorded_decision(request) if ask else None
        while True:
            decision: Decision | NodeState | ChangeSet | None = Decision(
                approved=True, actor=ctx.settings.mode
            )
            if ask:
                decision = recorded or await self._review(request)
            if not isinstance(decision, Decision):
                return decision
            if decision.hunks is None:
                return await self._commit(attempt, request, decision)
            chosen = await self._chosen_hunks(attempt, request, decision)
            if not isinstance(chosen, str):
                return await self._commit(attempt, request, decision, chosen)
            if decision is recorded:  # it no longer holds: close it, and ask
                await ctx.store.record_approval(
                    node.id, "refused", "verifier", None, chosen, bundle=request.bundle_id
                )
            recorded = None
            # the chosen hunks alone are not stable: the bundle is asked about again

    async def _chosen_hunks(
        self, attempt: Attempt, request: ApprovalRequest, decision: Decision
    ) -> _Chosen | str:
        """The approved hunks as a bundle of their own, verified again; else the reason
        (settled with it) when they name nothing of the bundle or are not stable alone."""
        ctx, node = self.ctx, self.node
        changes = attempt.changes
        assert changes is not None and decision.hunks is not None
        ids = list(decision.hunks)
        unknown = unknown_ids(bundle_hunks(changes.changes, changes.base), ids)
        parts = split(changes.changes, changes.base, ids)
        if unknown or not parts.chosen:
            why = f"no hunk {', '.join(unknown)} in bundle {request.bundle_id}"
            await ctx.approver.settled(request, Settlement(None, why))
            return why
        now = ChangeSet(changes=parts.chosen, base=parts.chosen_base)
        energy = await self._verify_carried(attempt, now)
        epsilon = ctx.settings.epsilon
        stable = energy.stable(epsilon)
        evidence = evidence_dicts(energy.evidence)
        await ctx.events.emit(
            ev.HunksVerified(
                node=node.id,
                bundle=request.bundle_id,
                hunks=ids,
                v=round(energy.total, 6),
                stable=stable,
                evidence=evidence,
            )
        )
        if not stable:
            shown = "; ".join(r.describe() for r in energy.evidence[:5]) or "a sensor degraded"
            why = (
                f"hunks {', '.join(ids)} alone are not stable: V(x)={energy.total:.3f} >= "
                f"epsilon {epsilon:g} ({shown}); bundle {request.bundle_id} stays pending"
            )
            await ctx.approver.settled(request, Settlement(None, why))
            return why
        rest = ChangeSet(changes=parts.rest, base=parts.rest_base)
        return _Chosen(now, rest, energy.as_dict())

    async def _recorded_decision(self, request: ApprovalRequest) -> Decision | None:
        """A reviewer's approval of this very bundle recorded before a crash, never committed:
        it stands, so a resumed session does not ask again. An approval by policy alone (the
        mode) does not stand for a reviewer's."""
        ctx = self.ctx
        row = await ctx.store.pending_approval(self.node.id, request.bundle_id)
        if row is None or row.actor in MODES:
            return None
        files = row.files
        hunks = row.hunks
        if hunks is not None:
            # An approval of some hunks stands only if they are hunks of this very bundle;
            # they are verified again before the commit, as when they were approved.
            if unknown_ids(bundle_hunks(request.changes, request.base), hunks):
                return None
            files = None
        return Decision(
            approved=True,
            actor=row.actor,
            feedback="recorded before the session stopped",
            files=None if files is None else [str(f) for f in files],
            hunks=hunks,
        )

    async def _review(self, request: ApprovalRequest) -> Decision | NodeState | ChangeSet | None:
        """Ask the reviewer: a decision to commit, or what :meth:`_approve_and_commit` returns."""
        ctx, node = self.ctx, self.node
        await self._state(NodeState.AWAITING_APPROVAL)
        energy = request.energy
        await ctx.events.emit(
            ev.AwaitingApproval(
                node=node.id,
                bundle=request.bundle_id,
                title=node.title,
                complexity=request.complexity,
                files=sorted(request.changes),
                v_syn=energy["v_syn"],
                v_str=energy["v_str"],
                v_log=energy["v_log"],
                v_boot=energy["v_boot"],
                v_sheaf=energy["v_sheaf"],
                v=energy["v"],
            )
        )
        decision = await self._decide(request)
        if decision is None:
            return NodeState.AWAITING_APPROVAL
        if not decision.approved and decision.hunks is not None:
            rest = await self._reject_hunks(request, decision)
            if rest is not None:
                return rest
            decision = replace(decision, hunks=None, feedback=self._feedback or "")
            self._feedback = None
        if decision.edits:
            # Only the bundle's own files can be edited; their base is already known. A file
            # edited back to its base leaves the bundle: the reviewer rejected that file alone.
            edits = {p: d for p, d in decision.edits.items() if p in request.changes}
            dropped = sorted(p for p, d in edits.items() if d == request.base.get(p))
            kept = {p: d for p, d in {**request.changes, **edits}.items() if p not in dropped}
            await ctx.events.emit(
                ev.BundleEdited(
                    node=node.id, files=sorted(edits), dropped=dropped, feedback=decision.feedback
                )
            )
            if dropped:  # heard by the model if the rest no longer holds and it regenerates
                why = f"The reviewer rejected {', '.join(dropped)} of the bundle."
                self._feedback = f"{why} {decision.feedback}".strip()
            base = {p: d for p, d in request.base.items() if p in kept}
            return ChangeSet(changes=kept, base=base)
        if not decision.approved:
            await ctx.store.record_approval(
                node.id,
                "rejected",
                decision.actor,
                None,
                decision.feedback,
                bundle=request.bundle_id,
            )
            await ctx.events.emit(
                ev.BundleRejected(
                    node=node.id, bundle=request.bundle_id, feedback=decision.feedback
                )
            )
            if decision.correction:  # the next attempt changes the proposal, as asked
                self._corrected = ChangeSet(dict(request.changes), dict(request.base))
                self._feedback = (
                    "The reviewer asks for changes to the bundle; its files are shown as "
                    f"proposed: change them as asked. {decision.feedback}"
                ).strip()
            else:
                why = f"The reviewer rejected the bundle. {decision.feedback}"
                self._feedback = why.strip()
            return None
        return decision

    async def _reject_hunks(self, request: ApprovalRequest, decision: Decision) -> ChangeSet | None:
        """Drop the rejected hunks; keep their lines and the reason for the model's next
        attempt. The rest (to verify again and propose), or ``None`` when nothing is left."""
        hunks = bundle_hunks(request.changes, request.base)
        chosen = set(decision.hunks or ())
        rejected = [h for h in hunks if h.id in chosen]
        keep = [h.id for h in hunks if h.id not in chosen]
        lines = ["The reviewer rejected these changes:", *(h.describe() for h in rejected)]
        if decision.feedback:
            lines.append(f"Reason: {decision.feedback}")
        said = "\n".join(lines)
        self._feedback = f"{self._feedback}\n\n{said}" if self._feedback else said
        await self.ctx.events.emit(
            ev.HunksRejected(
                node=self.node.id,
                bundle=request.bundle_id,
                hunks=[h.id for h in rejected],
                remaining=len(keep),
                feedback=decision.feedback,
            )
        )
        if not keep:
            return None
        parts = split(request.changes, request.base, keep)
        self._hunks_left = True
        return ChangeSet(changes=parts.chosen, base=parts.chosen_base)

    async def _decide(self, request: ApprovalRequest) -> Decision | None:
        if self.ctx.settings.auto_approve:
            return Decision(approved=True, actor="user", feedback="approved with -y")
        return await self.ctx.approver.review(request)

    async def _commit(
        self,
        attempt: Attempt,
        request: ApprovalRequest,
        decision: Decision,
        hunks: _Chosen | None = None,
    ) -> NodeState | ChangeSet | None:
        """Commit the approved files (or the verified ``hunks``); the rest is returned."""
        ctx, node = self.ctx, self.node
        changes = attempt.changes
        assert changes is not None
        chosen = set(decision.files) if decision.files is not None else set(changes.changes)
        now = _subset(changes, chosen) if hunks is None else hunks.now
        rest = _subset(changes, set(changes.changes) - chosen) if hunks is None else hunks.rest
        if not now.changes:
            await ctx.approver.settled(request, Settlement(None, "no file of the bundle chosen"))
            return changes
        energy = attempt.energy.as_dict() if hunks is None else hunks.energy
        # The intent names the bundle and, when a part is left, the part approved: the files,
        # or the hunks (in its note). A resumed session honours it for the same bundle,
        # verifying the hunks again first, and after its commit proposes what is left.
        intent = request.bundle_id
        partial = bool(rest.changes)
        note = hunks_note(decision.hunks) if partial and decision.hunks is not None else ""
        files = sorted(chosen) if partial and decision.hunks is None else None
        trailers = {
            "Keel-Session": ctx.session_id,
            "Keel-Node": node.id,
            "Keel-Bundle": now.content_hash(),
            "Keel-Energy": energy_trailer(energy),
            "Keel-Approved-By": decision.actor,
        }
        base = await self._created_empty(now, decision)
        # The decision is an intent, durable before the commit: a crash after it leaves an
        # approval a resumed session honours (or, if git has the commit, completes). A resumed
        # commit of the same bundle keeps the intent recorded before the crash.
        if await ctx.store.pending_approval(node.id, intent) is None:
            await ctx.store.record_approval(
                node.id,
                "approved",
                decision.actor,
                None,
                note,
                bundle=intent,
                files=files,
            )
        try:
            sha = await ctx.ledger.commit(now.changes, base, f"keel: {node.title}", trailers)
        except ConflictError as exc:
            # Closes the intent: this bundle as approved can no longer be committed.
            await ctx.store.record_approval(
                node.id,
                "refused",
                "ledger",
                None,
                str(exc),
                bundle=intent,
            )
            await ctx.approver.settled(request, Settlement(None, str(exc)))
            return await self._rebase(changes, exc)
        except LedgerRefused as exc:
            return await self._refused(request, exc)
        ctx.faults.hit("node_ledger_committed")
        await ctx.store.confirm_approval(node.id, sha, decision.actor)
        await ctx.approver.settled(request, Settlement(sha, None, sorted(now.changes)))
        committed = ev.NodeCommitted if not rest.changes else ev.BundlePartiallyCommitted
        await ctx.events.emit(
            committed(node=node.id, ledger=sha, files=sorted(now.changes), v=energy["v"])
        )
        if rest.changes:
            self._hunks_left = hunks is not None
            return rest
        self._overlay.clear()
        self._progress = None
        await self._state(NodeState.COMMITTED, sha)
        ctx.faults.hit("node_commit_recorded")
        return NodeState.COMMITTED

    async def _refused(self, request: ApprovalRequest, exc: LedgerRefused) -> NodeState:
        """git's state, a user's hook or signing refused the commit; nothing was written. The
        intent is closed, the reason (a hook's output) recorded and sent, and the bundle
        stays pending: once the cause is fixed, ``keel resume`` asks for the approval again."""
        ctx, node = self.ctx, self.node
        reason = str(exc)
        await ctx.store.record_approval(
            node.id, "refused", "ledger", None, reason, bundle=request.bundle_id
        )
        await ctx.approver.settled(request, Settlement(None, reason))
        await ctx.events.emit(
            ev.LedgerRefused(
                node=node.id, bundle=request.bundle_id, reason=reason, output=exc.output
            )
        )
        await self._state(NodeState.AWAITING_APPROVAL, f"ledger refused: {reason}")
        return NodeState.AWAITING_APPROVAL

    async def _created_empty(self, now: ChangeSet, decision: Decision) -> dict[str, bytes | None]:
        """The base to commit against, allowing files the reviewer's editor created empty.

        Applying an approval in an editor may create a new file (empty) on disk before the
        ledger writes it; for the files the decision names in ``created`` that is part of
        this approval, not a user edit, so an empty file stands for "absent".
        """
        base = dict(now.base)
        for path in decision.created:
            if path in base and base[path] is None and await self.ctx.ledger.read(path) == b"":
                base[path] = b""
        return base

    async def _rebase(self, changes: ChangeSet, conflict: ConflictError) -> ChangeSet | None:
        """The user edited some of the bundle's files: merge the bundle onto their edits.

        A clean three-way merge is verified again and proposed. A real conflict returns
        ``None``: the node regenerates on top of the user's content (every later sandbox
        carries it) with a note saying why. The user's edits are never overwritten.
        """
        ctx, node = self.ctx, self.node
        merged: dict[str, bytes | None] = dict(changes.changes)
        base: dict[str, bytes | None] = dict(changes.base)
        unmerged = []
        for path in conflict.paths:
            current = await ctx.ledger.read(path)
            self._overlay[path] = current
            result = await ctx.ledger.merge(changes.base.get(path), current, changes.changes[path])
            base[path] = current
            if result is None:
                unmerged.append(path)
                merged[path] = current
            else:
                merged[path] = result
        await ctx.events.emit(
            ev.BundleRebased(node=node.id, files=list(conflict.paths), conflicts=unmerged)
        )
        if unmerged:
            self._feedback = (
                "The user edited " + ", ".join(unmerged) + " while the bundle waited and the "
                "bundle's changes conflict with those edits. Redo them on top of the current "
                "content shown above."
            )
            return None
        return ChangeSet(changes=merged, base=base)

    async def _escalate(self, last: Attempt | None) -> NodeState:
        ctx, node = self.ctx, self.node
        energy = last.energy if last else None
        escalated = ev.NodeEscalated(
            node=node.id,
            title=node.title,
            attempts=ctx.settings.max_attempts,
            energy=energy.as_dict() if energy else {},
            evidence=evidence_dicts(energy.evidence) if energy else [],
            degraded=list(energy.degraded_sensors) if energy else [],
            reason="did not reach V < epsilon within the attempts",
        )
        report = {key: value for key, value in escalated.to_json().items() if key != "type"}
        await ctx.store.record_escalation(node.id, report)
        await self._state(NodeState.ESCALATED, escalated.reason)
        await ctx.events.emit(escalated)
        return NodeState.ESCALATED


@dataclass(frozen=True)
class _Chosen:
    """Approved hunks verified as a bundle of their own: what to commit, what is left."""

    now: ChangeSet
    rest: ChangeSet
    energy: dict[str, float]


def complexity(node: PlanNode, attempt: Attempt) -> int:
    """Balanced mode's measure: files the bundle changes plus every command the attempt runs,
    the plan node's own and the bundle's (docs/explanation/sessions.md)."""
    files = len(attempt.changes.changes) if attempt.changes else 0
    commands = len(node.commands) + len(attempt.bundle.commands if attempt.bundle else [])
    return files + commands


def _based_id(changes: ChangeSet) -> str:
    """A bundle id over the proposal and its base."""
    digest = hashlib.sha256(changes.content_hash().encode())
    for path in sorted(changes.base):
        data = changes.base[path]
        digest.update(path.encode() + b"\0")
        digest.update(b"-" if data is None else b"+" + hashlib.sha256(data).digest())
    return digest.hexdigest()[:16]


def _deleted(changes: ChangeSet) -> list[str]:
    return [path for path, data in changes.changes.items() if data is None]


def _subset(changes: ChangeSet, paths: set[str]) -> ChangeSet:
    return ChangeSet(
        changes={p: d for p, d in changes.changes.items() if p in paths},
        base={p: d for p, d in changes.base.items() if p in paths},
    )


def energy_trailer(energy: Mapping[str, float]) -> str:
    """``V=0.000 syn=0.000 str=0.000 log=0.000 boot=0.000 sheaf=0.000`` for the ledger."""
    parts = [f"V={energy['v']:.3f}"]
    parts += [f"{c.value}={energy['v_' + c.value]:.3f}" for c in Component]
    return " ".join(parts)


def _new_files(paths: list[str], sandbox: Path, workspace: Path) -> list[str]:
    """The valid paths of ``paths`` that exist neither in ``sandbox`` nor in ``workspace``."""
    found = []
    for raw in paths:
        try:
            path = check_plan_path(raw, workspace)
            check_plan_path(path, sandbox)
        except PathError:
            continue
        if any(
            (root / path).exists() or (root / path).is_symlink() for root in (sandbox, workspace)
        ):
            continue
        if path not in found:
            found.append(path)
    return found


def _missing_tests(command: str, sandbox: Path) -> list[str]:
    """The test files ``command`` names that do not exist in ``sandbox``."""
    return [
        path
        for path in command_files(command)
        if is_test_path(path) and not (sandbox / path).exists()
    ]
