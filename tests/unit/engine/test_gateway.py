"""The model gateway: reply parsing, budgets checked before calls, recording and redaction."""

from __future__ import annotations

import itertools

import pytest

from keel.engine.gateway import (
    Budget,
    BudgetExceeded,
    ModelGateway,
    Reply,
    parse_reply,
)
from keel.engine.models import Tier, Usage
from keel.engine.ports import ProviderError
from keel.engine.redaction import Redactor
from keel.engine.replies import ArtifactBundle, VerifierReport
from tests.unit.engine.doubles import RecordingStore, ScriptedClient, make_gateway

REPORT = '{"verdict": "unstable", "analysis": "off by one", "fix_hints": ["use <="]}'


_ATTEMPTS = itertools.count(1)


async def _ask(
    gateway: ModelGateway, prompt: str = "please", attempt: int | None = None
) -> Reply[VerifierReport]:
    """Each call is a new step (a fresh attempt number) unless ``attempt`` repeats one."""
    return await gateway.ask(
        Tier.VERIFIER,
        VerifierReport,
        system="sys",
        prompt=prompt,
        node_id="n1",
        attempt=attempt or next(_ATTEMPTS),
    )


# -- parse_reply -----------------------------------------------------------------------------


def test_parse_reply_accepts_plain_json() -> None:
    reply = parse_reply(VerifierReport, REPORT)
    assert reply.error is None
    assert reply.value == VerifierReport(
        verdict="unstable", analysis="off by one", fix_hints=["use <="]
    )
    assert reply.text == REPORT


@pytest.mark.parametrize("fence", ["```json\n{}\n```", "```\n{}\n```", "  ```json {} ```\n"])
def test_parse_reply_accepts_fenced_json(fence: str) -> None:
    reply = parse_reply(VerifierReport, fence.replace("{}", REPORT))
    assert reply.error is None
    assert reply.value is not None
    assert reply.value.fix_hints == ["use <="]


def test_parse_reply_reads_a_raw_newline_inside_a_string_as_a_newline() -> None:
    """Small models write code into ``content`` with literal newlines and tabs."""
    raw = '{"writes": [{"path": "a.py", "content": "def f():\n\treturn 1\n"}]}'
    assert "\n" in raw  # a real newline, which strict JSON refuses
    reply = parse_reply(ArtifactBundle, raw)
    assert reply.error is None and reply.value is not None
    assert reply.value.writes[0].content == "def f():\n\treturn 1\n"


@pytest.mark.parametrize(
    "text",
    [
        '{"writes": [{"path": "a.py", "content": "x\n"}], "extra": 1}',  # schema, not JSON
        '{"writes": [{"path": "a.py", "content": "x\n"}]',  # unterminated
        '{"writes": [{"path": "a.py"}]}\n',
    ],
)
def test_parse_reply_stays_strict_about_everything_else(text: str) -> None:
    reply = parse_reply(ArtifactBundle, text)
    assert reply.value is None and reply.error is not None


def test_parse_reply_names_the_field_of_a_schema_violation() -> None:
    reply = parse_reply(VerifierReport, '{"verdict": "maybe", "analysis": "?"}')
    assert reply.value is None
    assert reply.error is not None
    assert "VerifierReport" in reply.error
    assert "verdict" in reply.error


def test_parse_reply_names_a_nested_field() -> None:
    reply = parse_reply(ArtifactBundle, '{"writes": [{"path": "a.py"}]}')
    assert reply.error is not None
    assert "writes.0.content" in reply.error


def test_parse_reply_refuses_extra_keys_by_name() -> None:
    reply = parse_reply(ArtifactBundle, '{"write": [{"path": "a.py", "content": ""}]}')
    assert reply.value is None
    assert reply.error is not None
    assert "write: Extra inputs are not permitted" in reply.error


def test_parse_reply_reports_bad_json_instead_of_raising() -> None:
    reply = parse_reply(VerifierReport, "Sure! Here is the report: {")
    assert reply.value is None
    assert reply.error is not None
    assert "Invalid JSON" in reply.error


# -- budgets ---------------------------------------------------------------------------------


async def test_max_steps_refuses_the_call_past_the_limit_before_calling() -> None:
    client = ScriptedClient([REPORT] * 5)
    gateway = make_gateway(client, RecordingStore(), budget=Budget(max_steps=2))
    await _ask(gateway)
    await _ask(gateway)
    with pytest.raises(BudgetExceeded) as info:
        await _ask(gateway)
    assert info.value.reason == "max_steps"
    assert len(client.requests) == 2


async def test_max_cost_refuses_a_call_that_could_exceed_the_limit() -> None:
    client = ScriptedClient([REPORT] * 5, cost=0.4)
    store = RecordingStore()
    gateway = make_gateway(client, store, budget=Budget(max_cost=1.0))
    await _ask(gateway)
    await _ask(gateway)  # 0.4 spent + 0.4 largest = 0.8 <= 1.0
    with pytest.raises(BudgetExceeded) as info:
        await _ask(gateway)  # 0.8 spent + 0.4 largest = 1.2 > 1.0
    assert info.value.reason == "max_cost"
    assert len(client.requests) == 2
    assert len(store.model_calls) == 2
    assert gateway.totals.cost_usd == pytest.approx(0.8)


async def test_no_budget_means_no_limit() -> None:
    client = ScriptedClient([REPORT] * 4, cost=100.0)
    gateway = make_gateway(client, RecordingStore(), budget=Budget())
    for _ in range(4):
        await _ask(gateway)
    assert gateway.totals.calls == 4


async def test_totals_add_up_tokens_and_cost() -> None:
    gateway = make_gateway(ScriptedClient([REPORT] * 3, cost=0.25), RecordingStore())
    for _ in range(3):
        await _ask(gateway)
    assert gateway.totals.as_dict() == {
        "calls": 3,
        "input_tokens": 30,
        "output_tokens": 15,
        "cost_usd": 0.75,
        "unpriced": 0,
    }


async def test_the_first_call_is_checked_against_the_clients_estimate() -> None:
    """Before any call there is no largest call to go by: the client's estimate stands in."""
    client = ScriptedClient([REPORT], cost=0.02, estimate=0.01)
    store = RecordingStore()
    gateway = make_gateway(client, store, budget=Budget(max_cost=0.0))
    with pytest.raises(BudgetExceeded) as info:
        await _ask(gateway)
    assert info.value.reason == "max_cost" and "up to $0.0100" in str(info.value)
    assert client.requests == [] and store.calls == []  # not even an intent was recorded


async def test_an_unpriced_model_estimates_zero_and_is_allowed_under_a_zero_budget() -> None:
    client = ScriptedClient([REPORT, REPORT], estimate=0.0, priced=False)
    gateway = make_gateway(client, RecordingStore(), budget=Budget(max_cost=0.0))
    await _ask(gateway)
    await _ask(gateway)
    assert len(client.requests) == 2
    assert gateway.totals.unpriced == 2 and gateway.totals.as_dict()["unpriced"] == 2


async def test_an_estimate_above_the_largest_call_so_far_decides() -> None:
    client = ScriptedClient([REPORT] * 3, cost=0.1, estimate=0.5)
    gateway = make_gateway(client, RecordingStore(), budget=Budget(max_cost=0.55))
    await _ask(gateway)  # 0 + max(0, 0.5) <= 0.55
    with pytest.raises(BudgetExceeded):
        await _ask(gateway)  # 0.1 + max(0.1, 0.5) > 0.55
    assert len(client.requests) == 1


# -- recording -------------------------------------------------------------------------------


async def test_every_call_is_recorded_with_its_outcome() -> None:
    store = RecordingStore()
    gateway = make_gateway(ScriptedClient([REPORT, "not json"], cost=0.1), store)
    good = await _ask(gateway)
    bad = await _ask(gateway)
    assert good.error is None
    assert bad.error is not None

    first, second = store.model_calls
    assert first.ok is True and first.error is None
    assert first.tier == "verifier"
    assert first.schema_name == "verifier_report"
    assert first.node_id == "n1"
    assert first.cost_usd == 0.1
    assert second.ok is False
    assert "Invalid JSON" in second.error


async def test_a_provider_error_is_recorded_and_re_raised() -> None:
    store = RecordingStore()
    client = ScriptedClient([ProviderError("upstream 503: overloaded", retryable=True)])
    gateway = make_gateway(client, store)
    with pytest.raises(ProviderError, match="overloaded"):
        await _ask(gateway)
    [call] = store.model_calls
    assert call.ok is False
    assert call.error == "upstream 503: overloaded"
    assert client.requests[0].session_id == store.session_id == "sess-1"


async def test_a_provider_error_message_is_redacted_before_it_is_stored() -> None:
    store = RecordingStore()
    client = ScriptedClient([ProviderError("bad key sk-abcdefghijklmnop")])
    with pytest.raises(ProviderError):
        await _ask(make_gateway(client, store))
    assert "sk-abcdefghijklmnop" not in store.model_calls[0].error


def test_redactor_removes_known_key_values_and_key_shaped_strings() -> None:
    redact = Redactor({"OPENAI_API_KEY": "my-very-secret-value", "SHORT": "abc"})
    text = redact(
        "k=my-very-secret-value o=sk-proj-AAAAAAAAAAAA a=sk-ant-api03-BBBBBBBBBB "
        "h=Bearer xyz123 keep abc"
    )
    assert "my-very-secret-value" not in text
    assert "sk-proj-AAAAAAAAAAAA" not in text
    assert "BBBBBBBBBB" not in text
    assert "xyz123" not in text
    assert text.count("[redacted]") == 4
    assert text.endswith("keep abc")  # values too short to be keys are left alone


async def test_without_log_llm_no_prompt_or_response_is_stored() -> None:
    store = RecordingStore()
    gateway = make_gateway(ScriptedClient([REPORT]), store, log_llm=False)
    await _ask(gateway, prompt="the secret sauce")
    [call] = store.model_calls
    assert call.prompt is None
    assert call.response is None
    assert "the secret sauce" not in repr(store.calls)


async def test_sizes_are_recorded_with_and_without_log_llm() -> None:
    for log_llm in (False, True):
        store = RecordingStore()
        gateway = make_gateway(ScriptedClient([REPORT]), store, log_llm=log_llm)
        await gateway.ask(
            Tier.VERIFIER, VerifierReport, system="sys", prompt="x" * 50, node_id=None, attempt=1
        )
        [call] = store.model_calls
        assert call.prompt_chars == 53 and call.reply_chars == len(REPORT)


async def test_with_log_llm_prompt_and_response_are_stored_redacted() -> None:
    store = RecordingStore()
    reply = REPORT.replace("off by one", "saw sk-live0123456789abc and hunter2hunter2")
    gateway = make_gateway(
        ScriptedClient([reply]), store, log_llm=True, secrets={"KEY": "hunter2hunter2"}
    )
    await _ask(gateway, prompt="use hunter2hunter2 to log in")
    [call] = store.model_calls
    assert call.prompt == "sys\n\nuse [redacted] to log in"
    assert "hunter2hunter2" not in call.response
    assert "sk-live0123456789abc" not in call.response
    assert "[redacted]" in call.response


async def test_an_answered_step_is_replayed_without_a_second_call() -> None:
    client = ScriptedClient([REPORT])
    store = RecordingStore()
    gateway = make_gateway(client, store)
    first = await _ask(gateway, attempt=7)
    again = await _ask(gateway, attempt=7)
    assert len(client.requests) == 1
    assert again.value == first.value
    kinds = [name for name, _ in store.calls]
    assert kinds.index("begin_step") < kinds.index("finish_step")


async def test_a_lazy_prompt_is_built_once_when_sent_and_never_for_a_replayed_step() -> None:
    """A resume replays recorded steps without building their prompts (the architect's needs
    the repository map); a step that is sent gets the prompt, bounded like a plain one."""
    client = ScriptedClient([REPORT])
    gateway = make_gateway(client, RecordingStore())
    built: list[str] = []

    async def prompt() -> str:
        built.append("built")
        return "lazily " * 3

    first = await gateway.ask(
        Tier.VERIFIER, VerifierReport, system="sys", prompt=prompt, node_id="n1", attempt=41
    )
    assert built == ["built"] and first.value is not None
    assert client.requests[0].prompt == "lazily " * 3

    async def refuse() -> str:
        raise AssertionError("a replayed step built its prompt")

    again = await gateway.ask(
        Tier.VERIFIER, VerifierReport, system="sys", prompt=refuse, node_id="n1", attempt=41
    )
    assert again.value == first.value and len(client.requests) == 1


async def test_a_replayed_truncated_reply_still_explains_the_cut() -> None:
    """Replayed without a request, a reply cut at ``max_tokens`` keeps its explanation."""
    store = RecordingStore()
    store.results["model:verifier:n1:5"] = {"text": '{"verdict": "unst', "truncated": True}
    gateway = ModelGateway(
        {},
        store,
        budget=Budget(),
        log_llm=False,
        redact=Redactor({}),
        max_reply_tokens={Tier.VERIFIER: 321},
    )
    reply = await _ask(gateway, attempt=5)
    assert reply.value is None and reply.error is not None
    assert "max_tokens limit (321 tokens)" in reply.error and "verifier_report" in reply.error


async def test_a_billed_reply_that_is_not_believed_still_counts_against_max_cost() -> None:
    charged = Usage(input_tokens=300, output_tokens=1000, cost_usd=0.7)
    unbelievable = ProviderError("reports a negative input token count (-5)", charged=charged)
    client = ScriptedClient([unbelievable, REPORT], cost=0.1)
    store = RecordingStore()
    gateway = make_gateway(client, store, budget=Budget(max_cost=1.0))
    with pytest.raises(ProviderError, match="negative"):
        await _ask(gateway)
    assert gateway.totals.cost_usd == pytest.approx(0.7)
    [call] = store.model_calls
    assert (call.input_tokens, call.output_tokens, call.cost_usd) == (300, 1000, 0.7)
    with pytest.raises(BudgetExceeded):
        await _ask(gateway)  # 0.7 spent + 0.7 largest > 1.0: the lie bought nothing
    assert len(client.requests) == 1
