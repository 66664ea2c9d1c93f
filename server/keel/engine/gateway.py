"""Every model call of a session goes through here: budgets, accounting, recording, parsing.

Budgets are checked *before* each call (a call that could take the session past a limit never
starts; what a call could cost is the larger of the most expensive call so far and the model
client's own estimate for this request, so even a session's first call is checked), every call
is recorded in the store whether it succeeds or not, and replies are validated
against their pydantic schema. An invalid reply is returned as an error text, not raised: the
caller feeds it back to the model as evidence for the next attempt.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from keel.engine.bounds import CHARS_PER_TOKEN, bound_reason, cut_middle
from keel.engine.models import Tier, Usage
from keel.engine.ports import (
    ExplorationTools,
    FaultPoint,
    KeelError,
    ModelClient,
    ModelRequest,
    NoFaults,
    ProviderError,
    SessionRecords,
    ToolCall,
    ToolResult,
    ToolTurn,
)
from keel.engine.records import CallTotals, ModelCall
from keel.engine.redaction import Redactor
from keel.engine.replies import SCHEMA_NAMES

ReplyT = TypeVar("ReplyT", bound=BaseModel)

#: Tool calls run per reply; more are refused (each still gets its result, as APIs require).
MAX_CALLS_PER_TURN = 16
#: How much of a call's arguments a step and the ``explore`` event keep.
MAX_SHOWN_ARGUMENTS = 1_000


class BudgetExceeded(KeelError):
    """A hard budget stopped the session; ``reason`` is ``max_cost`` or ``max_steps``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Budget:
    max_cost: float | None = None
    max_steps: int | None = None


@dataclass
class Totals:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    largest_call_usd: float = 0.0
    unpriced: int = 0  # calls of models without a known price, counted at cost 0

    def add(self, input_tokens: int, output_tokens: int, cost_usd: float, priced: bool) -> None:
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cost_usd += cost_usd
        self.largest_call_usd = max(self.largest_call_usd, cost_usd)
        self.unpriced += 0 if priced else 1

    @classmethod
    def restore(cls, recorded: CallTotals) -> Totals:
        """The account of a session so far, from the store (for resume)."""
        return cls(
            calls=int(recorded.calls),
            input_tokens=int(recorded.input_tokens),
            output_tokens=int(recorded.output_tokens),
            cost_usd=float(recorded.cost_usd),
            largest_call_usd=float(recorded.largest_call_usd),
            unpriced=int(recorded.unpriced),
        )

    def as_dict(self) -> dict[str, float | int]:
        return {
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "unpriced": self.unpriced,
        }


@dataclass(frozen=True)
class Reply(Generic[ReplyT]):
    """A parsed reply, or the reason it could not be parsed (fed back to the model)."""

    value: ReplyT | None
    error: str | None
    text: str


class ModelGateway:
    """Routes each tier's requests to its model and keeps the session's account."""

    def __init__(
        self,
        clients: Mapping[Tier, ModelClient],
        store: SessionRecords,
        *,
        budget: Budget,
        log_llm: bool,
        redact: Redactor,
        totals: Totals | None = None,
        faults: FaultPoint | None = None,
        max_prompt_tokens: int | None = None,
        instructions: str = "",
        max_reply_tokens: Mapping[Tier, int] | None = None,
    ) -> None:
        """``max_prompt_tokens`` bounds every prompt (``None``: unbounded); ``instructions``
        (the project's, already bounded) open every prompt of every tier;
        ``max_reply_tokens`` bounds each tier's replies (``[max_tokens]``; a tier not in it
        is bounded only by the server)."""
        self._clients = clients
        self._store = store
        self._session_id = store.session_id
        self._budget = budget
        self._log_llm = log_llm
        self._redact = redact
        self.totals = totals or Totals()
        self._faults = faults or NoFaults()
        self._max_tokens = max_prompt_tokens
        self._instructions = instructions
        self._max_reply_tokens = dict(max_reply_tokens or {})

    def prompt_room(self, system: str) -> int | None:
        """Characters a tier's prompt may have besides the instructions (None: unbounded)."""
        if self._max_tokens is None:
            return None
        opening = len(self._instructions) + 2 if self._instructions else 0
        return max(0, self._max_tokens * CHARS_PER_TOKEN - len(system) - opening)

    def _bounded(self, system: str, prompt: str) -> str:
        """The instructions, then ``prompt``; cut in the middle, saying so, if over the bound."""
        if self._instructions:
            prompt = self._instructions + "\n\n" + prompt
        if self._max_tokens is None:
            return prompt
        room = max(0, self._max_tokens * CHARS_PER_TOKEN - len(system))
        return cut_middle(prompt, room, bound_reason(self._max_tokens))

    def model_for(self, tier: Tier) -> str:
        return self._clients[tier].name

    def _check_budget(self, client: ModelClient, request: ModelRequest) -> None:
        steps = self._budget.max_steps
        if steps is not None and self.totals.calls >= steps:
            raise BudgetExceeded(
                "max_steps", f"step budget reached: {self.totals.calls} of {steps} model calls"
            )
        cost = self._budget.max_cost
        if cost is None:
            return
        next_call = max(self.totals.largest_call_usd, client.estimate_cost(request))
        if self.totals.cost_usd + next_call > cost:
            raise BudgetExceeded(
                "max_cost",
                f"cost budget reached: ${self.totals.cost_usd:.4f} spent, the next call could "
                f"cost up to ${next_call:.4f}, limit ${cost:.4f}",
            )

    async def ask(
        self,
        tier: Tier,
        reply_type: type[ReplyT],
        *,
        system: str,
        prompt: str | Callable[[], Awaitable[str]],
        node_id: str | None,
        attempt: int,
        explore: Exploration | None = None,
    ) -> Reply[ReplyT]:
        """One structured request; raises ProviderError or BudgetExceeded, never on bad JSON.

        The request is a step with a deterministic id. Its intent is recorded before the call
        and its reply after it, in one transaction with the call's accounting, so a resumed
        session gets the recorded reply back instead of asking the model again.

        With ``explore``, the model may call read-only tools before it answers: each turn of
        calls is a model step, each tool call a ``tool`` step of its own (replayed on resume
        like a reply), until the model answers or the budget of turns and result tokens is
        spent; then it is told so and must answer.

        ``prompt`` may be a coroutine function, awaited once, when a step is not recorded: a
        resumed session replays its recorded steps without building their prompts (the
        architect's needs the repository map).
        """
        name = SCHEMA_NAMES[reply_type]
        max_tokens = self._max_reply_tokens.get(tier)
        bounded: list[str] = []

        async def full_prompt() -> str:
            if not bounded:
                text = prompt if isinstance(prompt, str) else await prompt()
                bounded.append(self._bounded(system, text))
            return bounded[0]

        turns: list[ToolTurn] = []
        spent_tokens = 0
        base = f"{tier.value}:{node_id or '-'}:{attempt}"
        for turn in itertools.count(1):
            must_answer = explore is not None and (
                turn > explore.max_turns or spent_tokens >= explore.max_tokens
            )
            notice = explore.spent_notice(name) if explore is not None and must_answer else ""
            step_id = f"model:{base}" + ("" if turn == 1 else f":turn{turn}")
            recorded = await self._store.step_result(step_id)
            if recorded is not None:
                text, calls = str(recorded["text"]), _calls_of(recorded.get("tool_calls"))
                truncated = bool(recorded.get("truncated"))
            else:
                request = ModelRequest(
                    tier=tier,
                    schema_name=name,
                    schema=reply_type.model_json_schema(),
                    system=system,
                    prompt=await full_prompt(),
                    session_id=self._session_id,
                    node_id=node_id,
                    attempt=attempt,
                    tools=tuple(explore.tools.specs()) if explore is not None else (),
                    turns=tuple(turns),
                    turn=turn,
                    must_answer=must_answer,
                    notice=notice,
                    max_tokens=max_tokens,
                )
                text, calls, truncated = await self._model_step(step_id, request, reply_type)
            if not calls:
                reply = parse_reply(reply_type, text)
                return _explain_truncation(reply, name, max_tokens, truncated)
            if explore is None or must_answer:
                why = "the exploration budget is spent" if must_answer else "no tools are offered"
                return Reply(None, f"the reply called tools but {why}: answer with a {name}", text)
            results = []
            for index, call in enumerate(calls, start=1):
                if index > MAX_CALLS_PER_TURN:  # deterministic, so neither run nor recorded
                    results.append(f"refused: at most {MAX_CALLS_PER_TURN} tool calls a reply")
                    continue
                left = max(0, explore.max_tokens - spent_tokens)
                result = await self._tool_step(
                    f"tool:{base}:turn{turn}:{index}", call, explore, left, tier, node_id
                )
                spent_tokens += math.ceil(len(result) / CHARS_PER_TOKEN)
                results.append(result)
            turns.append(ToolTurn(tuple(calls), tuple(results)))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _model_step(
        self, step_id: str, request: ModelRequest, reply_type: type[BaseModel]
    ) -> tuple[str, list[ToolCall], bool]:
        """The reply text and tool calls of one request not recorded yet (:meth:`ask` replays
        a recorded one), and whether it stopped at ``max_tokens``; recorded here."""
        tier, system, prompt = request.tier, request.system, request.prompt
        client = self._clients[tier]
        self._check_budget(client, request)
        call = ModelCall(
            tier=tier.value,
            model=client.name,
            node_id=request.node_id,
            attempt=request.attempt,
            schema_name=request.schema_name,
            prompt=self._redact(system + "\n\n" + prompt + _turns_text(request))
            if self._log_llm
            else None,
            prompt_chars=len(system) + len(prompt) + _turns_chars(request.turns),
        )
        await self._store.begin_step(step_id, "model", {"tier": tier.value, "model": client.name})
        self._faults.hit("model_intent")
        self.totals.calls += 1
        try:
            reply = await client.complete(request)
        except ProviderError as exc:
            call = replace(call, error=self._redact(str(exc)))
            if exc.charged is not None:
                call = self._charge(call, exc.charged)
            await self._store.record_model_call(call)
            raise
        usage = reply.usage
        self.totals.add(usage.input_tokens, usage.output_tokens, usage.cost_usd, usage.priced)
        calls = list(reply.tool_calls)
        error = None
        if not calls:
            parsed = _explain_truncation(
                parse_reply(reply_type, reply.text),
                request.schema_name,
                request.max_tokens,
                reply.truncated,
            )
            error = parsed.error
        shown = reply.text or json.dumps([_call_dict(c) for c in calls])
        call = replace(
            call,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=usage.cost_usd,
            priced=usage.priced,
            latency_s=reply.latency_s,
            ok=error is None,
            error=error,
            response=self._redact(shown) if self._log_llm else None,
            reply_chars=len(shown),
        )
        result: dict[str, Any] = {"text": self._redact(reply.text), "model": reply.model}
        if calls:
            result["tool_calls"] = [_call_dict(c) for c in calls]
        if reply.truncated:
            result["truncated"] = True
        await self._store.finish_step(step_id, result, call)
        self._faults.hit("model_result")
        return reply.text, calls, reply.truncated

    def _charge(self, call: ModelCall, usage: Usage) -> ModelCall:
        """Count a failed call that was still billed (a reply with an unbelievable usage)."""
        self.totals.add(usage.input_tokens, usage.output_tokens, usage.cost_usd, usage.priced)
        return replace(
            call,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=usage.cost_usd,
            priced=usage.priced,
        )

    async def _tool_step(
        self,
        step_id: str,
        call: ToolCall,
        explore: Exploration,
        left_tokens: int,
        tier: Tier,
        node_id: str | None,
    ) -> str:
        """One tool call's result, recorded as a step (replayed on resume, never re-run)."""
        recorded = await self._store.step_result(step_id)
        if recorded is not None:
            return str(recorded["text"])
        limit = min(explore.max_result_chars, left_tokens * CHARS_PER_TOKEN)
        arguments = _shown_arguments(call.arguments)
        await self._store.begin_step(step_id, "tool", {"tool": call.name, "arguments": arguments})
        self._faults.hit("explore_tool")
        if limit <= 0:
            outcome = ToolResult("refused: the exploration budget is spent", True)
        else:
            outcome = await explore.tools.call(call.name, call.arguments, limit)
        text = self._redact(outcome.text)
        record: dict[str, Any] = {
            "tool": call.name,
            "arguments": arguments,
            "text": text,
            "refused": outcome.refused,
            "chars": len(text),
            "tier": tier.value,
            "node_id": node_id,
        }
        await self._store.finish_step(step_id, record)
        if explore.on_call is not None:
            await explore.on_call(record)
        return text


@dataclass(frozen=True)
class Exploration:
    """Read-only tools a request may use before it answers, and their budget.

    ``max_turns`` is how many replies may call tools; ``max_tokens`` bounds the results the
    model reads in all (characters / 4), each result also at most ``max_result_chars``.
    ``on_call`` hears of every tool call run (not of replayed ones), for the ``explore``
    event.
    """

    tools: ExplorationTools
    max_turns: int
    max_tokens: int
    max_result_chars: int = 8_000
    on_call: Callable[[Mapping[str, Any]], Awaitable[None]] | None = None

    def spent_notice(self, schema_name: str) -> str:
        return (
            f"The exploration budget is spent ({self.max_turns} tool turns, "
            f"{self.max_tokens} tokens of results): no more tool calls. "
            f"Answer now with the {schema_name}."
        )


def _shown_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments as recorded and emitted: whole, or clipped when the model sent a lot."""
    text = json.dumps(dict(arguments), default=str)
    if len(text) <= MAX_SHOWN_ARGUMENTS:
        return dict(arguments)
    return {"_clipped": text[:MAX_SHOWN_ARGUMENTS]}


def _call_dict(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "name": call.name, "arguments": dict(call.arguments)}


def _calls_of(value: object) -> list[ToolCall]:
    if not isinstance(value, list):
        return []
    return [
        ToolCall(str(item["id"]), str(item["name"]), dict(item.get("arguments") or {}))
        for item in value
        if isinstance(item, Mapping)
    ]


def _turns_text(request: ModelRequest) -> str:
    """The exploration so far as ``--log-llm`` keeps it: each call and what it returned."""
    parts = []
    for turn in request.turns:
        for call, result in zip(turn.calls, turn.results, strict=True):
            arguments = json.dumps(dict(call.arguments), default=str)
            parts.append(f"\n\n[tool call] {call.name} {arguments}\n[result]\n{result}")
    if request.notice:
        parts.append("\n\n" + request.notice)
    return "".join(parts)


def _turns_chars(turns: Sequence[ToolTurn]) -> int:
    return sum(len(result) for turn in turns for result in turn.results)


def parse_reply(reply_type: type[ReplyT], text: str) -> Reply[ReplyT]:
    """Validate ``text`` as ``reply_type``; a fenced ```json block is accepted too."""
    body = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, flags=re.DOTALL)
    if fenced:
        body = fenced.group(1)
    try:
        return Reply(reply_type.model_validate_json(body), None, text)
    except ValidationError as exc:
        lenient = _with_raw_control_characters(body)
        if lenient is not None and exc.errors()[0]["type"] == "json_invalid":
            try:  # a raw newline inside a string means a newline: unambiguous
                return Reply(reply_type.model_validate(lenient), None, text)
            except ValidationError:
                pass
        return Reply(None, _describe(exc), text)


def _with_raw_control_characters(body: str) -> object | None:
    """``body`` parsed as JSON that allows raw control characters (a literal newline or tab)
    inside strings, as small models write code in a ``content``; None if it is not that."""
    try:
        parsed: object = json.loads(body, strict=False)
    except ValueError:
        return None
    return parsed


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:10]:
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        fix = _FIXES.get(error["type"], "")
        problems.append(f"{where}: {error['msg']}" + (f" ({fix})" if fix else ""))
    return "the reply is not a valid " + exc.title + ": " + "; ".join(problems)


#: What to do about each kind of schema violation, appended to its message.
_FIXES: dict[str, str] = {
    "missing": "add this field",
    "extra_forbidden": "remove this field: it is not part of the schema",
    "json_invalid": "reply with one complete JSON object and nothing around it",
    "json_type": "reply with one JSON object",
    "model_type": "this must be a JSON object",
    "model_attributes_type": "this must be a JSON object",
    "list_type": "this must be a JSON list",
    "string_type": "this must be a JSON string",
    "int_type": "this must be an integer",
    "int_parsing": "this must be an integer",
    "enum": "use one of the values listed",
    "literal_error": "use one of the values listed",
    "string_too_short": "this must not be empty",
    "too_short": "give at least one item",
    "greater_than_equal": "use a larger number",
}


def _explain_truncation(
    reply: Reply[ReplyT], schema_name: str, max_tokens: int | None, truncated: bool
) -> Reply[ReplyT]:
    """An invalid reply that stopped at ``max_tokens`` says so, and what to do about it."""
    if reply.error is None or not truncated:
        return reply
    limit = f" ({max_tokens} tokens)" if max_tokens is not None else ""
    error = (
        f"the reply was cut off at the max_tokens limit{limit} before the JSON object was "
        f"complete: answer with a shorter {schema_name} (fewer, smaller items; "
        "diffs instead of whole files), or raise [max_tokens] in keel.toml"
    )
    return Reply(None, error, reply.text)
