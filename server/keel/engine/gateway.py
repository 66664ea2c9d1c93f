"""Every model call of a session goes through here: budgets, accounting, recording, parsing.

Budgets are checked *before* each call (a call that could take the session past a limit never
starts; what a call could cost is the larger of the most expensive call so far and the model
client's own estimate for this request, so even a session's first call is checked), every call
is recorded in the store whether it succeeds or not, and replies are validated
against their pydantic schema. An invalid reply is returned as an error text, not raised: the
caller feeds it back to the model as evidence for the next attempt.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from keel.engine.bounds import CHARS_PER_TOKEN, bound_reason, cut_middle
from keel.engine.models import SCHEMA_NAMES, Tier, Usage
from keel.engine.ports import (
    FaultPoint,
    KeelError,
    ModelClient,
    ModelRequest,
    NoFaults,
    ProviderError,
    SessionStore,
)
from keel.engine.redaction import Redactor

ReplyT = TypeVar("ReplyT", bound=BaseModel)


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
    def restore(cls, recorded: Mapping[str, Any]) -> Totals:
        """The account of a session so far, from the store (for resume)."""
        return cls(
            calls=int(recorded.get("calls", 0)),
            input_tokens=int(recorded.get("input_tokens", 0)),
            output_tokens=int(recorded.get("output_tokens", 0)),
            cost_usd=float(recorded.get("cost_usd", 0.0)),
            largest_call_usd=float(recorded.get("largest_call_usd", 0.0)),
            unpriced=int(recorded.get("unpriced", 0)),
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
        store: SessionStore,
        session_id: str,
        *,
        budget: Budget,
        log_llm: bool,
        redact: Redactor,
        totals: Totals | None = None,
        faults: FaultPoint | None = None,
        max_prompt_tokens: int | None = None,
        instructions: str = "",
    ) -> None:
        """``max_prompt_tokens`` bounds every prompt (``None``: unbounded); ``instructions``
        (the project's, already bounded) open every prompt of every tier."""
        self._clients = clients
        self._store = store
        self._session_id = session_id
        self._budget = budget
        self._log_llm = log_llm
        self._redact = redact
        self.totals = totals or Totals()
        self._faults = faults or NoFaults()
        self._max_tokens = max_prompt_tokens
        self._instructions = instructions

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
        prompt: str,
        node_id: str | None,
        attempt: int,
    ) -> Reply[ReplyT]:
        """One structured request; raises ProviderError or BudgetExceeded, never on bad JSON.

        The request is a step with a deterministic id. Its intent is recorded before the call
        and its reply after it, in one transaction with the call's accounting, so a resumed
        session gets the recorded reply back instead of asking the model again.
        """
        step_id = f"model:{tier.value}:{node_id or '-'}:{attempt}"
        recorded = await self._store.step_result(self._session_id, step_id)
        if recorded is not None:
            return parse_reply(reply_type, str(recorded["text"]))
        client = self._clients[tier]
        name = SCHEMA_NAMES[reply_type]
        prompt = self._bounded(system, prompt)
        request = ModelRequest(
            tier=tier,
            schema_name=name,
            schema=reply_type.model_json_schema(),
            system=system,
            prompt=prompt,
            session_id=self._session_id,
            node_id=node_id,
            attempt=attempt,
        )
        self._check_budget(client, request)
        call: dict[str, object] = {
            "tier": tier.value,
            "model": client.name,
            "node_id": node_id,
            "attempt": attempt,
            "schema_name": name,
            "input_tokens": 0,
            "output_tokens": 0,
            "cost_usd": 0.0,
            "priced": True,
            "latency_s": 0.0,
            "ok": False,
            "error": None,
            "prompt": self._redact(system + "\n\n" + prompt) if self._log_llm else None,
            "response": None,
            "prompt_chars": len(system) + len(prompt),
            "reply_chars": None,
        }
        await self._store.begin_step(
            self._session_id, step_id, "model", {"tier": tier.value, "model": client.name}
        )
        self._faults.hit("model_intent")
        self.totals.calls += 1
        try:
            reply = await client.complete(request)
        except ProviderError as exc:
            call["error"] = self._redact(str(exc))
            if exc.charged is not None:
                self._charge(call, exc.charged)
            await self._store.record_model_call(self._session_id, call)
            raise
        usage = reply.usage
        self.totals.add(usage.input_tokens, usage.output_tokens, usage.cost_usd, usage.priced)
        parsed = parse_reply(reply_type, reply.text)
        call.update(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=usage.cost_usd,
            priced=usage.priced,
            latency_s=reply.latency_s,
            ok=parsed.error is None,
            error=parsed.error,
            response=self._redact(reply.text) if self._log_llm else None,
            reply_chars=len(reply.text),
        )
        result = {"text": self._redact(reply.text), "model": reply.model}
        await self._store.finish_step(self._session_id, step_id, result, call)
        self._faults.hit("model_result")
        return parsed

    def _charge(self, call: dict[str, object], usage: Usage) -> None:
        """Count a failed call that was still billed (a reply with an unbelievable usage)."""
        self.totals.add(usage.input_tokens, usage.output_tokens, usage.cost_usd, usage.priced)
        call.update(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=usage.cost_usd,
            priced=usage.priced,
        )


def parse_reply(reply_type: type[ReplyT], text: str) -> Reply[ReplyT]:
    """Validate ``text`` as ``reply_type``; a fenced ```json block is accepted too."""
    body = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, flags=re.DOTALL)
    if fenced:
        body = fenced.group(1)
    try:
        return Reply(reply_type.model_validate_json(body), None, text)
    except ValidationError as exc:
        return Reply(None, _describe(exc), text)


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:10]:
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        problems.append(f"{where}: {error['msg']}")
    return "the reply is not a valid " + exc.title + ": " + "; ".join(problems)
