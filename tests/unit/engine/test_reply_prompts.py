"""Every tier's system prompt describes its reply: every field of the schema (nested ones
too) with its meaning from the models, the rules validation enforces, and an example that
is itself a valid reply. Replies are bounded per tier, and a reply cut at the bound says
what to do about it."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import BaseModel

from keel.engine import prompts
from keel.engine.gateway import Budget, ModelGateway
from keel.engine.models import Tier, Usage
from keel.engine.planner import validate_plan
from keel.engine.ports import ModelReply, ModelRequest
from keel.engine.redaction import Redactor
from keel.engine.replies import ArtifactBundle, Explanation, Speculation, TaskPlan, VerifierReport
from tests.unit.engine.doubles import RecordingStore

SYSTEMS: list[tuple[str, type[BaseModel]]] = [
    (prompts.ARCHITECT_SYSTEM, TaskPlan),
    (prompts.ACTUATOR_SYSTEM, ArtifactBundle),
    (prompts.VERIFIER_SYSTEM, VerifierReport),
    (prompts.SPECULATOR_SYSTEM, Speculation),
    (prompts.EXPLAIN_SYSTEM, Explanation),
]


def all_fields(model: type[BaseModel]) -> list[tuple[str, str]]:
    """(name, description) of every field of ``model`` and of the models it holds."""
    found = []
    for name, info in model.model_fields.items():
        found.append((name, info.description or ""))
        inner = prompts._nested(info.annotation)
        if inner is not None:
            found += all_fields(inner)
    return found


@pytest.mark.parametrize(("system", "model"), SYSTEMS, ids=lambda v: getattr(v, "__name__", ""))
def test_each_tiers_prompt_lists_every_field_of_its_schema(
    system: str, model: type[BaseModel]
) -> None:
    for name, description in all_fields(model):
        assert description, f"{model.__name__}.{name} has no description"
        line = re.search(rf"^\s*- {re.escape(name)} \(.*\): (.*)$", system, re.MULTILINE)
        assert line is not None, f"{name} is not described in the prompt of {model.__name__}"
        assert description in system


@pytest.mark.parametrize(("system", "model"), SYSTEMS, ids=lambda v: getattr(v, "__name__", ""))
def test_each_tiers_example_is_a_valid_reply(system: str, model: type[BaseModel]) -> None:
    example = system.split("Example:\n", 1)[1].splitlines()[0]
    model.model_validate(json.loads(example))


def test_the_plan_example_passes_the_plan_rules_and_the_rules_are_stated() -> None:
    plan = TaskPlan.model_validate(prompts.PLAN_EXAMPLE)
    assert validate_plan(plan) == []
    system = prompts.ARCHITECT_SYSTEM
    for needle in ("owns at least one file", "depends on the nodes it tests", "not parameters"):
        assert needle in system
    assert 'one of "command" | "code" | "unit_test"' in system


def test_required_fields_are_marked() -> None:
    assert "- title (string, required)" in prompts.ARCHITECT_SYSTEM
    assert "- owns (list of strings):" in prompts.ARCHITECT_SYSTEM
    assert "- writes (list of objects):" in prompts.ACTUATOR_SYSTEM


class _Cut:
    """A client whose every reply stops at max_tokens, cut mid-object."""

    name = "fake:cut"

    def __init__(self) -> None:
        self.requests: list[ModelRequest] = []

    def estimate_cost(self, request: ModelRequest) -> float:
        return 0.0

    async def complete(self, request: ModelRequest) -> ModelReply:
        self.requests.append(request)
        return ModelReply('{"verdict": "unst', self.name, Usage(5, 7), 0.01, truncated=True)


async def test_replies_are_bounded_per_tier_and_a_cut_reply_names_the_fix() -> None:
    client = _Cut()
    gateway = ModelGateway(
        dict.fromkeys(Tier, client),
        RecordingStore("sess-1"),
        budget=Budget(),
        log_llm=False,
        redact=Redactor({}),
        max_reply_tokens={Tier.VERIFIER: 700, Tier.ACTUATOR: 9000},
    )
    reply = await gateway.ask(
        Tier.VERIFIER, VerifierReport, system="s", prompt="p", node_id="n", attempt=1
    )
    assert client.requests[0].max_tokens == 700
    assert reply.value is None and reply.error is not None
    assert "cut off at the max_tokens limit (700 tokens)" in reply.error
    assert "[max_tokens]" in reply.error
    await gateway.ask(Tier.SPECULATOR, Speculation, system="s", prompt="p", node_id=None, attempt=1)
    assert client.requests[1].max_tokens is None  # a tier without a bound sends none


def test_prose_around_the_json_is_refused_with_the_fix() -> None:
    """Strict parsing (the prompt mode relies on it): one JSON object, or a fenced block."""
    from keel.engine.gateway import parse_reply

    reply = parse_reply(VerifierReport, 'Sure! {"verdict": "unstable", "analysis": "x"}')
    assert reply.value is None and reply.error is not None
    assert "reply with one complete JSON object and nothing around it" in reply.error
