"""Small in-memory doubles of the engine's ports, for tests of the engine's own logic."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from keel.engine.events import Event
from keel.engine.gateway import Budget, ModelGateway
from keel.engine.models import (
    CommandResult,
    Component,
    LedgerEntry,
    Residual,
    SensorReport,
    Tier,
    Usage,
)
from keel.engine.ports import (
    ApprovalRequest,
    ConflictError,
    Decision,
    ModelReply,
    ModelRequest,
    ProviderError,
    Settlement,
    ToolCall,
)
from keel.engine.records import ApprovalRecord, AttemptRecord, CallTotals, JsonObject, ModelCall
from keel.engine.redaction import Redactor

EventT = TypeVar("EventT", bound=Event)


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

    async def confirm_approval(self, node_id: str, ledger_sha: str, actor: str) -> ApprovalRecord:
        self._log("confirm_approval", node_id, ledger_sha, actor)
        done = [a for a in self.approvals if a.node_id == node_id and a.ledger_sha == ledger_sha]
        if done:
            return done[-1]
        pending = self._pending(node_id)
        if pending is None:
            await self.record_approval(node_id, "approved", actor, ledger_sha)
            return self.approvals[-1]
        index = self.approvals.index(pending)
        confirmed = dataclasses.replace(pending, ledger_sha=ledger_sha, actor=actor)
        self.approvals[index] = confirmed
        return confirmed

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

    async def record_event(self, event: Event) -> None:
        self._log("record_event", event)
        self.events.append(event.to_json())

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


# ----------------------------------------------------------------- a whole engine in memory


class KeyedClient:
    """A ModelClient answering by (tier, node, attempt), like a transcript: a reply is JSON
    text, an object (sent as JSON) or an exception to raise. A key without a reply fails the
    call (a :class:`ProviderError`), which the speculator and the verifier tier survive."""

    def __init__(self, replies: Mapping[tuple[str, str | None, int], object]) -> None:
        self.replies = dict(replies)
        self.requests: list[ModelRequest] = []

    @property
    def name(self) -> str:
        return "fake:keyed"

    def estimate_cost(self, request: ModelRequest) -> float:
        return 0.0

    async def complete(self, request: ModelRequest) -> ModelReply:
        self.requests.append(request)
        key = (request.tier.value, request.node_id, request.attempt)
        if key not in self.replies:
            raise ProviderError(f"no scripted reply for {key}")
        reply = self.replies[key]
        if isinstance(reply, Exception):
            raise reply
        text = reply if isinstance(reply, str) else json.dumps(reply)
        return ModelReply(text, self.name, Usage(10, 5, 0.001), 0.01)

    def asked(self, tier: str, node: str | None = None) -> list[int]:
        """The attempts asked of ``tier`` (for ``node``), in order."""
        return [r.attempt for r in self.requests if r.tier.value == tier and r.node_id == node]


def plan_reply(*nodes: Mapping[str, object]) -> dict[str, object]:
    return {"nodes": list(nodes)}


def node_spec(node_id: str, owns: list[str], **extra: object) -> dict[str, object]:
    spec: dict[str, object] = {
        "id": node_id,
        "title": f"Node {node_id}",
        "kind": "code",
        "owns": owns,
        "context": [],
        "depends_on": [],
        "commands": [],
        "contract": {"symbols": [], "forbidden": []},
    }
    return {**spec, **extra}


def bundle_reply(writes: Mapping[str, str], commands: Sequence[str] = ()) -> dict[str, object]:
    return {
        "writes": [{"path": p, "content": c} for p, c in writes.items()],
        "diffs": [],
        "deletes": [],
        "commands": list(commands),
    }


class ToyPlugin:
    """A language plugin over ``.py`` files with sensors anyone can read: a file holding
    ``SYNTAX`` has a checker error (V_syn), a test file holding ``FAIL`` a failing test
    (V_log). Every command is allowed."""

    name = "toy"

    def owns_file(self, path: str) -> bool:
        return path.endswith(".py")

    def is_test_file(self, path: str) -> bool:
        return Path(path).name.startswith("test_")

    def command_allowed(self, command: str) -> bool:
        return True

    async def check(self, root: Path, files: Sequence[str]) -> SensorReport:
        found = [
            Residual(Component.SYN, "syntax error", "toy-check", path=path)
            for path in files
            if "SYNTAX" in (root / path).read_text()
        ]
        return SensorReport("toy-check", tuple(found))

    async def run_tests(self, root: Path, files: Sequence[str] | None) -> SensorReport:
        found = [
            Residual(Component.LOG, "test failed", "toy-test", path=path, test_id=f"{path}::t")
            for path in files or []
            if "FAIL" in (root / path).read_text()
        ]
        return SensorReport("toy-test", tuple(found))

    async def bootstrap(self, root: Path) -> SensorReport:
        return SensorReport("toy-boot")

    async def cross_check(self, root: Path, files: Sequence[str]) -> SensorReport:
        return SensorReport("toy-cross")


class MemoryLedger:
    """The Ledger port over a dict: ``files`` is the workspace (the user may edit it),
    ``log`` the commits, newest last. A commit refuses a file that differs from its base."""

    def __init__(self, files: Mapping[str, bytes] | None = None) -> None:
        self.files: dict[str, bytes] = dict(files or {})
        self.log: list[LedgerEntry] = []

    async def export(self, dest: Path) -> None:
        for path, data in self.files.items():
            (dest / path).parent.mkdir(parents=True, exist_ok=True)
            (dest / path).write_bytes(data)

    async def read(self, path: str) -> bytes | None:
        return self.files.get(path)

    async def head(self) -> str | None:
        return self.log[-1].sha if self.log else None

    async def check_ready(self) -> None:
        return None

    async def commit(
        self,
        changes: Mapping[str, bytes | None],
        base: Mapping[str, bytes | None],
        message: str,
        trailers: Mapping[str, str],
    ) -> str:
        moved = [p for p in changes if self.files.get(p) != base.get(p)]
        if moved:
            raise ConflictError(f"changed since the bundle was made: {moved}", moved)
        for path, data in changes.items():
            if data is None:
                self.files.pop(path, None)
            else:
                self.files[path] = data
        sha = f"{len(self.log) + 1:040x}"
        entry = LedgerEntry(
            sha,
            message,
            trailers["Keel-Session"],
            trailers["Keel-Node"],
            trailers["Keel-Bundle"],
            trailers["Keel-Energy"],
            trailers["Keel-Approved-By"],
            "2026-01-01T00:00:00Z",
            tuple(sorted(changes)),
        )
        self.log.append(entry)
        return sha

    async def settle_index(self, paths: Sequence[str]) -> None:
        return None

    async def merge(
        self, base: bytes | None, ours: bytes | None, theirs: bytes | None
    ) -> bytes | None:
        return None

    async def entries(self, limit: int | None = None) -> list[LedgerEntry]:
        return list(reversed(self.log))[:limit]

    async def show(self, entry: str) -> tuple[LedgerEntry, str]:
        return next(e for e in self.log if e.sha == entry), ""

    async def rollback(self, entry: str) -> str:
        raise NotImplementedError


class FakeRunner:
    """Runs nothing: a command in ``failing`` exits 1, others 0. With ``hold``, every run
    waits for ``release`` after setting ``started`` (to abort a session mid-command)."""

    def __init__(self, failing: Iterable[str] = (), *, hold: bool = False) -> None:
        self.failing = set(failing)
        self.hold = hold
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.ran: list[str] = []

    async def run(self, command: str, cwd: Path, *, timeout_s: float) -> CommandResult:
        self.ran.append(command)
        if self.hold:
            self.started.set()
            await self.release.wait()
        return CommandResult(command, 1 if command in self.failing else 0, "")


class EventList:
    """An EventSink keeping every event record."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type[EventT]) -> list[EventT]:
        """The events of one kind, in the order they were sent."""
        return [e for e in self.events if isinstance(e, kind)]


class ScriptedApprover:
    """An Approver answering reviews from a list of decisions (None: nobody can decide)."""

    def __init__(self, decisions: Iterable[Decision | None] = ()) -> None:
        self.decisions = list(decisions)
        self.reviewed: list[ApprovalRequest] = []
        self.settlements: list[Settlement] = []

    async def review(self, request: ApprovalRequest) -> Decision | None:
        self.reviewed.append(request)
        return self.decisions.pop(0) if self.decisions else None

    async def approve_command(self, node_id: str, command: str) -> bool:
        return True

    async def settled(self, request: ApprovalRequest, settlement: Settlement) -> None:
        self.settlements.append(settlement)
