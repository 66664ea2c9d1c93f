"""ReplayClient: transcript lookup, raw text, delays, and clear errors for bad files."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from keel.engine.models import Tier
from keel.engine.ports import ConfigError, ProviderError
from keel.providers.base import ProviderSettings
from keel.providers.replay import ReplayClient
from tests.unit.providers.helpers import BUNDLE, ENTRIES, PLAN, make_request


def write_transcript(path: Path, lines: list[Any]) -> Path:
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    path.write_text(text + "\n", encoding="utf-8")
    return path


@pytest.fixture
def transcript(tmp_path: Path) -> Path:
    return write_transcript(tmp_path / "demo.jsonl", [*ENTRIES[:2], "", *ENTRIES[2:]])


async def test_replies_are_found_by_tier_node_and_attempt(transcript: Path) -> None:
    c = ReplayClient(str(transcript), ProviderSettings(env={}))
    plan = await c.complete(make_request(Tier.ARCHITECT, node=None, schema_name="task_plan"))
    bundle = await c.complete(make_request())
    assert json.loads(plan.text) == PLAN
    assert json.loads(bundle.text) == BUNDLE
    assert c.name == f"replay:{transcript}"
    assert (bundle.usage.input_tokens, bundle.usage.output_tokens) == (1000, 500)


async def test_text_entries_are_returned_verbatim(transcript: Path) -> None:
    c = ReplayClient(str(transcript), ProviderSettings(env={}))
    reply = await c.complete(make_request(attempt=2))
    assert reply.text == "{not json"


async def test_missing_reply_is_a_final_error(transcript: Path) -> None:
    c = ReplayClient(str(transcript), ProviderSettings(env={}))
    with pytest.raises(ProviderError) as err:
        await c.complete(make_request(node="node-3", attempt=2))
    assert str(err.value) == f"transcript {transcript} has no reply for actuator node-3 attempt 2"
    assert not err.value.retryable


def _priced_and_unpriced(tmp_path: Path) -> ReplayClient:
    """Attempt 1 recorded with its model (priced), attempt 2 without one (unpriced)."""
    usage = {"input_tokens": 2000, "output_tokens": 100}
    path = write_transcript(
        tmp_path / "t.jsonl",
        [
            {"tier": "actuator", "node": "node-2", "attempt": 1, "reply": {}, "usage": usage,
             "model": "openai:gpt-4.1-mini"},
            {"tier": "actuator", "node": "node-2", "attempt": 2, "reply": {}, "usage": usage},
        ],
    )  # fmt: skip
    return ReplayClient(str(path), ProviderSettings(env={}))


async def test_recorded_model_is_priced_and_unrecorded_is_not(tmp_path: Path) -> None:
    c = _priced_and_unpriced(tmp_path)
    priced = await c.complete(make_request(attempt=1))
    unpriced = await c.complete(make_request(attempt=2))
    assert priced.model == "openai:gpt-4.1-mini"
    assert priced.usage.cost_usd == pytest.approx(2000 * 0.4 / 1e6 + 100 * 1.6 / 1e6)
    assert (unpriced.usage.cost_usd, unpriced.usage.priced) == (0.0, False)


def test_the_estimate_of_a_recorded_reply_is_its_exact_cost(tmp_path: Path) -> None:
    c = _priced_and_unpriced(tmp_path)
    exact = 2000 * 0.4 / 1e6 + 100 * 1.6 / 1e6
    assert c.estimate_cost(make_request(attempt=1)) == pytest.approx(exact)
    assert c.estimate_cost(make_request(attempt=2)) == 0.0  # unpriced
    assert c.estimate_cost(make_request(attempt=9)) == 0.0  # no reply: the call will fail


async def test_recorded_delay_is_reproduced(tmp_path: Path) -> None:
    entry = {"tier": "verifier", "node": "node-2", "attempt": 1, "reply": {}, "delay_s": 0.2}
    path = write_transcript(tmp_path / "slow.jsonl", [entry])
    c = ReplayClient(str(path), ProviderSettings(env={}))
    start = time.monotonic()
    reply = await c.complete(make_request(Tier.VERIFIER, schema_name="verifier_report"))
    assert time.monotonic() - start >= 0.2
    assert reply.latency_s >= 0.2


def test_relative_path_is_resolved_from_the_current_directory(
    transcript: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(transcript.parent)
    c = ReplayClient(transcript.name, ProviderSettings(env={}))
    assert len(c.entries) == 4


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"transcript .*nope\.jsonl does not exist"):
        ReplayClient(str(tmp_path / "nope.jsonl"), ProviderSettings(env={}))


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        ("{not json", "invalid JSON"),
        ('["a list"]', "expected a JSON object"),
        ('{"node": "node-1", "attempt": 1, "reply": {}}', 'missing "tier"'),
        ('{"tier": "planner", "attempt": 1, "reply": {}}', '"tier" must be one of'),
        ('{"tier": "actuator", "node": "n", "reply": {}}', 'missing "attempt"'),
        ('{"tier": "actuator", "node": "n", "attempt": 0, "reply": {}}', '"attempt" must be'),
        ('{"tier": "actuator", "node": "n", "attempt": 1}', 'exactly one of "reply" and "text"'),
        ('{"tier": "actuator", "attempt": 1, "reply": {}, "text": "x"}', "exactly one of"),
        ('{"tier": "actuator", "attempt": 1, "replay": {}}', "unknown key(s) replay"),
        ('{"tier": "actuator", "attempt": 1, "reply": {}, "delay_s": -1}', '"delay_s" must be'),
        ('{"tier": "actuator", "attempt": 1, "reply": {}, "usage": {"input_tokens": "x"}}',
         '"usage.input_tokens" must be'),
        ('{"tier": "architect", "node": null, "attempt": 1, "reply": {}}', "a second reply for"),
    ],
)  # fmt: skip
def test_malformed_transcript_names_file_and_line(
    tmp_path: Path, bad_line: str, expected: str
) -> None:
    path = write_transcript(tmp_path / "bad.jsonl", [*ENTRIES[:2], "", bad_line])
    with pytest.raises(ConfigError) as err:
        ReplayClient(str(path), ProviderSettings(env={}))
    message = str(err.value)
    assert message.startswith(f"transcript {path} line 4: ")
    assert expected in message
