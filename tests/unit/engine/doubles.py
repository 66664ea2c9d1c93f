"""Small in-memory doubles of the engine's ports, for tests of the engine's own logic."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from keel.engine.events import Event
from keel.engine.gateway import Budget, ModelGateway
from keel.engine.models import Tier, Usage
from keel.engine.ports import ModelReply, ModelRequest, ToolCall
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
    """A SessionStore whose methods do nothing but remember how they were called."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.results: dict[str, dict[str, Any]] = {}

    @property
    def model_calls(self) -> list[Mapping[str, Any]]:
        return [args[1] for name, args in self.calls if name == "record_model_call"]

    async def create_session(self, session_id: str, task: str, config: Mapping[str, Any]) -> None:
        self.calls.append(("create_session", (session_id, task, config)))

    async def update_session_config(self, session_id: str, values: Mapping[str, Any]) -> None:
        self.calls.append(("update_session_config", (session_id, values)))

    async def node_states(self, session_id: str) -> Mapping[str, str]:
        states: dict[str, str] = {}
        for name, args in self.calls:
            if name == "set_node_state":
                states[args[1]] = args[2]
        return states

    async def record_plan(self, session_id: str, plan: Mapping[str, Any]) -> None:
        self.calls.append(("record_plan", (session_id, plan)))

    async def set_node_state(
        self, session_id: str, node_id: str, state: str, detail: str = ""
    ) -> None:
        self.calls.append(("set_node_state", (session_id, node_id, state, detail)))

    async def record_attempt(
        self,
        session_id: str,
        node_id: str,
        attempt: int,
        bundle: Mapping[str, Any] | None,
        energy: Mapping[str, float],
        evidence: Sequence[Mapping[str, Any]],
        stable: bool,
    ) -> None:
        self.calls.append(
            ("record_attempt", (session_id, node_id, attempt, bundle, energy, evidence, stable))
        )

    async def record_model_call(self, session_id: str, call: Mapping[str, Any]) -> None:
        self.calls.append(("record_model_call", (session_id, dict(call))))

    async def record_approval(
        self,
        session_id: str,
        node_id: str,
        decision: str,
        actor: str,
        ledger_sha: str | None,
        note: str = "",
        *,
        bundle: str | None = None,
        files: Sequence[str] | None = None,
    ) -> None:
        self.calls.append(
            ("record_approval", (session_id, node_id, decision, actor, ledger_sha, note))
        )

    async def confirm_approval(
        self, session_id: str, node_id: str, ledger_sha: str, actor: str
    ) -> None:
        self.calls.append(("confirm_approval", (session_id, node_id, ledger_sha, actor)))

    async def pending_approval(
        self, session_id: str, node_id: str, bundle: str
    ) -> Mapping[str, Any] | None:
        return None

    async def record_escalation(
        self, session_id: str, node_id: str, report: Mapping[str, Any]
    ) -> None:
        self.calls.append(("record_escalation", (session_id, node_id, report)))

    async def record_event(self, session_id: str, event: Event) -> None:
        self.calls.append(("record_event", (session_id, event)))

    async def finish_session(
        self, session_id: str, outcome: str, totals: Mapping[str, Any]
    ) -> None:
        self.calls.append(("finish_session", (session_id, outcome, totals)))

    async def begin_step(
        self, session_id: str, step_id: str, kind: str, detail: Mapping[str, Any]
    ) -> None:
        self.calls.append(("begin_step", (session_id, step_id, kind, detail)))

    async def finish_step(
        self,
        session_id: str,
        step_id: str,
        result: Mapping[str, Any],
        call: Mapping[str, Any] | None = None,
    ) -> None:
        self.calls.append(("finish_step", (session_id, step_id, result)))
        self.results[step_id] = dict(result)
        if call is not None:
            self.calls.append(("record_model_call", (session_id, call)))

    async def call_totals(self, session_id: str) -> Mapping[str, Any]:
        return {
            "calls": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "cost_usd": 0.0,
            "largest_call_usd": 0.0,
        }

    async def step_result(self, session_id: str, step_id: str) -> Mapping[str, Any] | None:
        return self.results.get(step_id)

    async def begin_run(self, session_id: str, pid: int, host: str) -> int:
        return 1

    async def end_run(self, run_id: int) -> None:
        return None

    async def abort_requested(self, session_id: str) -> bool:
        return False

    async def baseline(self, head: str, environment: str) -> Mapping[str, Any] | None:
        return None

    async def record_baseline(self, head: str, environment: str, record: Mapping[str, Any]) -> None:
        self.calls.append(("record_baseline", (head, environment, record)))

    async def close(self) -> None:
        self.calls.append(("close", ()))


def make_gateway(
    client: ScriptedClient,
    store: RecordingStore,
    *,
    budget: Budget | None = None,
    log_llm: bool = False,
    secrets: Mapping[str, str] | None = None,
    session_id: str = "sess-1",
) -> ModelGateway:
    """A gateway that sends every tier to ``client``."""
    return ModelGateway(
        dict.fromkeys(Tier, client),
        store,
        session_id,
        budget=budget or Budget(),
        log_llm=log_llm,
        redact=Redactor(secrets or {}),
    )
