"""Small in-memory doubles of the engine's ports, for tests of the engine's own logic."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from keel.engine.gateway import Budget, ModelGateway
from keel.engine.models import Tier, Usage
from keel.engine.ports import ModelReply, ModelRequest, ToolCall
from keel.engine.records import ApprovalRecord, AttemptRecord, CallTotals, JsonObject, ModelCall
from keel.engine.redaction import Redactor


class ScriptedClient:
    """A ModelClient that answers from a script (text or an exception to raise) and records
    every request it was sent. A list of :class:`ToolCall` in the script is a reply that
    calls those tools."""

    def __init__(
        self,
        script: Iterable[str | Exception | list[ToolCall]],
        *,
        name: str = "fake:model",
        cost: float = 0.0,
        estimate: float = 0.0,
        priced: bool = True,
    ) -> None:
        self._script = list(script)
        self._name = name
        self._cost = cost
        self._estimate = estimate
        self._priced = priced
        self.requests: list[ModelRequest] = []

    @property
    def name(self) -> str:
        return self._name

    def estimate_cost(self, request: ModelRequest) -> float:
        return self._estimate

    async def complete(self, request: ModelRequest) -> ModelReply:
        self.requests.append(request)
        step = self._script.pop(0) if self._script else "{}"
        if isinstance(step, Exception):
            raise step
        usage = Usage(input_tokens=10, output_tokens=5, cost_usd=self._cost, priced=self._priced)
        if isinstance(step, list):
            return ModelReply("", self._name, usage, 0.01, tool_calls=tuple(step))
        return ModelReply(text=step, model=self._name, usage=usage, latency_s=0.01)


class RecordingStore:
    """The engine's :class:`~keel.engine.ports.SessionRecords` in memory: it keeps every
    record typed, as the SQLite store would return it, and remembers each call in ``calls``
    (method name and arguments) for tests of the order of writes."""

    def __init__(self, session_id: str = "sess-1") -> None:
        self._session_id = session_id
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.task: str | None = None
        self.config: dict[str, Any] = {}
        self.outcome: str | None = None
        self.totals: JsonObject | None = None
        self.plans: list[JsonObject] = []
        self.states: dict[str, str] = {}
        self.transitions: list[tuple[str, str, str]] = []
        self.attempts: dict[tuple[str, int], AttemptRecord] = {}
        self.model_calls: list[ModelCall] = []
        self.approvals: list[ApprovalRecord] = []
        self.escalations: list[tuple[str, JsonObject]] = []
        self.events: list[JsonObject] = []
        self.intents: dict[str, tuple[str, JsonObject]] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self.runs: dict[int, bool] = {}  # run id -> still running
        self.abort = False

    @property
    def session_id(self) -> str:
        return self._session_id

    def _log(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))

    async def create_session(self, task: str, config: JsonObject) -> None:
        self._log("create_session", task, config)
        self.task, self.config = task, dict(config)

    async def update_session_config(self, values: JsonObject) -> None:
        self._log("update_session_config", values)
        self.config.update(values)

    async def node_states(self) -> Mapping[str, str]:
        return dict(self.states)

    async def record_plan(self, plan: JsonObject) -> None:
        self._log("record_plan", plan)
        self.plans.append(plan)
        for node in plan.get("nodes", ()):
            self.states.setdefault(str(node["id"]), "queued")

    async def set_node_state(self, node_id: str, state: str, detail: str = "") -> None:
        self._log("set_node_state", node_id, str(state), detail)
        self.states[node_id] = str(state)
        self.transitions.append((node_id, str(state), detail))

    async def record_attempt(self, attempt: AttemptRecord) -> None:
        self._log("record_attempt", attempt)
        self.attempts[(attempt.node_id, attempt.attempt)] = attempt

    async def record_model_call(self, call: ModelCall) -> None:
        self._log("record_model_call", call)
        self.model_calls.append(call)

    async def record_approval(
        self,
        node_id: str,
        decision: str,
        actor: str,
        ledger_sha: str | None,
        note: str = "",
        *,
        bundle: str | None = None,
        files: Sequence[str] | None = None,
    ) -> None:
        self._log("record_approval", node_id, decision, actor, ledger_sha, note)
        chosen = None if files is None else list(files)
        number = len(self.approvals) + 1
        self.approvals.append(
            ApprovalRecord(number, node_id, decision, actor, ledger_sha, note, bundle, chosen)
        )

    async def confirm_approval(self, node_id: str, ledger_sha: str, actor: str) -> None:
        self._log("confirm_approval", node_id, ledger_sha, actor)
        pending = self._pending(node_id)
        if pending is None:
            await self.record_approval(node_id, "approved", actor, ledger_sha)
            return
        index = self.approvals.index(pending)
        self.approvals[index] = dataclasses.replace(pending, ledger_sha=ledger_sha, actor=actor)

    def _pending(self, node_id: str) -> ApprovalRecord | None:
        mine = [a for a in self.approvals if a.node_id == node_id]
        if mine and mine[-1].decision == "approved" and mine[-1].ledger_sha is None:
            return mine[-1]
        return None

    async def pending_approval(self, node_id: str, bundle: str) -> ApprovalRecord | None:
        pending = self._pending(node_id)
        return pending if pending is not None and pending.bundle_id == bundle else None

    async def record_escalation(self, node_id: str, report: JsonObject) -> None:
        self._log("record_escalation", node_id, report)
        self.escalations.append((node_id, report))

    async def record_event(self, event: JsonObject) -> None:
        self._log("record_event", event)
        self.events.append(event)

    async def finish_session(self, outcome: str, totals: JsonObject) -> None:
        self._log("finish_session", outcome, totals)
        self.outcome, self.totals = outcome, totals

    async def begin_step(self, step_id: str, kind: str, detail: JsonObject) -> None:
        self._log("begin_step", step_id, kind, detail)
        self.intents[step_id] = (kind, detail)

    async def finish_step(
        self, step_id: str, result: JsonObject, call: ModelCall | None = None
    ) -> None:
        self._log("finish_step", step_id, result)
        self.results[step_id] = dict(result)
        if call is not None:
            await self.record_model_call(call)

    async def call_totals(self) -> CallTotals:
        calls = self.model_calls
        return CallTotals(
            calls=len(calls),
            input_tokens=sum(c.input_tokens for c in calls),
            output_tokens=sum(c.output_tokens for c in calls),
            cost_usd=sum(c.cost_usd for c in calls),
            largest_call_usd=max((c.cost_usd for c in calls), default=0.0),
            unpriced=sum(1 for c in calls if not c.priced),
        )

    async def step_result(self, step_id: str) -> JsonObject | None:
        return self.results.get(step_id)

    async def begin_run(self, pid: int, host: str) -> int:
        run_id = len(self.runs) + 1
        self.runs[run_id] = True
        return run_id

    async def end_run(self, run_id: int) -> None:
        self.runs[run_id] = False

    async def abort_requested(self) -> bool:
        return self.abort and any(self.runs.values())


class MemoryStore:
    """The :class:`~keel.engine.ports.SessionStore` in memory: one :class:`RecordingStore`
    per session, and the baselines."""

    def __init__(self) -> None:
        self.records: dict[str, RecordingStore] = {}
        self.baselines: dict[tuple[str, str], JsonObject] = {}
        self.closed = False

    def session(self, session_id: str) -> RecordingStore:
        return self.records.setdefault(session_id, RecordingStore(session_id))

    async def baseline(self, head: str, environment: str) -> JsonObject | None:
        return self.baselines.get((head, environment))

    async def record_baseline(self, head: str, environment: str, record: JsonObject) -> None:
        self.baselines[(head, environment)] = record

    async def close(self) -> None:
        self.closed = True


def make_gateway(
    client: ScriptedClient,
    store: RecordingStore,
    *,
    budget: Budget | None = None,
    log_llm: bool = False,
    secrets: Mapping[str, str] | None = None,
) -> ModelGateway:
    """A gateway that sends every tier to ``client``."""
    return ModelGateway(
        dict.fromkeys(Tier, client),
        store,
        budget=budget or Budget(),
        log_llm=log_llm,
        redact=Redactor(secrets or {}),
    )
