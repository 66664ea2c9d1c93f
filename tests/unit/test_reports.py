"""The report functions behind ``keel status``, ``keel logs`` and ``keel replay``, on the
store's records. The commands themselves run on real sessions in tests/integration."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from keel.engine.events import BudgetExceededEvent, EventError, EventKind, NodeFailed
from keel.engine.records import AttemptRecord, EscalationRecord, EventRecord, ModelCall, StepRecord
from keel.providers.replay import index_entries, select_entry
from keel.replay import parse_step_id, transcript_entries
from keel.reports import (
    call_row,
    call_stats,
    default_redactor,
    error_rows,
    format_logs,
    format_status,
    redact_row,
    secrets_in,
    stored_events,
)


def _call(tier: str, model: str, latency: float, **extra: Any) -> ModelCall:
    node, attempt = extra.pop("node", None), extra.pop("attempt", 1)
    call = ModelCall(
        at="2026-11-22T10:15:00.123+00:00",
        tier=tier,
        model=model,
        node_id=node,
        attempt=attempt,
        schema_name="artifact_bundle",
        input_tokens=100,
        output_tokens=10,
        cost_usd=0.01,
        priced=True,
        latency_s=latency,
        ok=True,
        error=None,
    )
    return dataclasses.replace(call, **extra)


def _step(step_id: str, result: dict[str, Any] | None, kind: str = "model") -> StepRecord:
    return StepRecord(step_id, kind, {}, result, "t")


def _escalation(report: dict[str, Any]) -> EscalationRecord:
    return EscalationRecord(1, "n1", report, "t")


def test_call_stats_per_tier_and_model_with_latency_mean_p50_max() -> None:
    calls = [
        _call("actuator", "openai:gpt-4.1", 1.0),
        _call("actuator", "openai:gpt-4.1", 2.0),
        _call("actuator", "anthropic:claude-sonnet-4-5", 6.0, ok=False, error="boom"),
        _call("architect", "openai:gpt-4.1", 3.0, priced=False, cost_usd=0.0),
    ]
    stats = call_stats(calls)
    assert stats["total"]["calls"] == 4 and stats["total"]["failed"] == 1
    assert stats["total"]["input_tokens"] == 400 and stats["total"]["output_tokens"] == 40
    assert stats["total"]["cost_usd"] == pytest.approx(0.03)
    assert stats["total"]["unpriced"] == 1
    assert stats["total"]["latency_s"] == {"mean": 3.0, "p50": 2.5, "max": 6.0}
    assert stats["by_tier"]["actuator"]["latency_s"] == {"mean": 3.0, "p50": 2.0, "max": 6.0}
    assert stats["by_model"]["openai:gpt-4.1"]["calls"] == 3
    assert call_stats([])["total"]["latency_s"] == {"mean": 0.0, "p50": 0.0, "max": 0.0}


def test_error_rows_tell_failed_calls_from_invalid_replies_and_commands_apart() -> None:
    calls = [
        _call("actuator", "m", 0.0, node="n1", ok=False, error="cannot reach http://x"),
        _call("actuator", "m", 0.4, node="n1", attempt=2, ok=False, error="the reply is not..."),
    ]
    evidence = [
        {"source": "command", "command": "make", "exit_code": 2, "message": "failed: boom"},
        {"source": "command", "command": "rm -rf /", "exit_code": -1, "message": "not run: no"},
        {"source": "command", "command": "sleep 99", "exit_code": -1, "message": "timed out"},
        {"source": "bundle", "path": "../x", "message": "escapes the workspace"},
        {"source": "pytest", "test_id": "t::a", "message": "assert 1 == 2"},
    ]
    attempts = [AttemptRecord("n1", 3, None, {}, evidence, False, "t")]
    escalations = [_escalation({"attempts": 3, "reason": "no", "evidence": [{"message": "e"}]})]
    budget = BudgetExceededEvent(
        reason="max_cost",
        message="cost budget reached",
        calls=2,
        input_tokens=10,
        output_tokens=1,
        cost_usd=1.5,
        unpriced=0,
        ts="t",
    )
    failed = NodeFailed(node="n2", reason="n1 did not commit", ts="u")
    rows = error_rows(calls, attempts, escalations, [budget, failed])
    assert rows[-2:] == [
        {"kind": "budget_exceeded", "node": None, "at": "t", "message": "cost budget reached"},
        {"kind": "node_failed", "node": "n2", "at": "u", "message": "n1 did not commit"},
    ]
    kinds = [row["kind"] for row in rows]
    assert kinds == [
        "call_failed",
        "invalid_reply",
        "command_failed",
        "command_refused",
        "command_timed_out",
        "bad_bundle",
        "escalation",
        "budget_exceeded",
        "node_failed",
    ]


def test_redaction_reaches_every_string_and_key_shaped_values() -> None:
    env = {"OPENAI_API_KEY": "plain-secret-value", "GITHUB_TOKEN": "tok-123456789", "HOME": "/h"}
    assert secrets_in(env) == {
        "OPENAI_API_KEY": "plain-secret-value",
        "GITHUB_TOKEN": "tok-123456789",
    }
    row = {
        "a": ["x plain-secret-value y", {"b": "tok-123456789"}],
        "c": "Bearer abc.def",
        "d": "sk-ant-api03-abcdefghijkl",
        "n": 3,
    }
    out = redact_row(row, default_redactor(env))
    assert "plain-secret-value" not in str(out) and "tok-123456789" not in str(out)
    assert "abc.def" not in str(out) and "abcdefghijkl" not in str(out)
    assert out["n"] == 3 and out["a"][0] == "x [redacted] y"


STATUS: dict[str, Any] = {
    "session": "s-1",
    "task": "Write notes",
    "outcome": None,
    "reason": "",
    "running": True,
    "pids": [4242],
    "counts": {"queued": 1, "running": 1, "committed": 1, "escalated": 0},
    "retries": 2,
    "escalations": 1,
    "ledger_entries": 1,
    "totals": {"calls": 5, "input_tokens": 500, "output_tokens": 50, "cost_usd": 0.0123},
    "budget": {"max_cost": 1.0, "max_steps": 10, "cost_left": 0.9877, "steps_left": 5},
    "nodes": [
        {
            "id": "node-1",
            "title": "First",
            "state": "committed",
            "retries": 2,
            "escalations": 0,
            "ledger": "0123456789abcdef",
            "energy": {"v_syn": 0, "v_str": 0, "v_log": 0, "v_boot": 0, "v_sheaf": 0, "v": 0},
        },
        {
            "id": "node-2",
            "title": "Second",
            "state": "running",
            "retries": 0,
            "escalations": 1,
            "ledger": None,
            "energy": None,
        },
    ],
}


def test_status_text() -> None:
    text = format_status(STATUS)
    assert "RUNNING (pid 4242)" in text
    assert "queued 1  running 1  committed 1" in text and "escalated" not in text.split("\n")[2]
    assert "2 retries, 1 escalations, 1 ledger commits" in text
    assert "$0.9877 of $1.0000 left; 5 of 10 model calls left" in text
    assert "V=0.000 [syn=0.00 str=0.00 log=0.00 boot=0.00 sheaf=0.00] retries 2 0123456789ab" in (
        text
    )
    assert "node-2       running            V=- escalated 1x  Second" in text
    stopped = format_status({**STATUS, "running": False, "pids": [], "budget": _no_limits()})
    assert "stopped before it finished (`keel resume` continues it)" in stopped
    assert "no cost limit; no step limit" in stopped


def _no_limits() -> dict[str, None]:
    return {"max_cost": None, "max_steps": None, "cost_left": None, "steps_left": None}


def test_logs_text_shows_prompts_only_when_stored() -> None:
    with_llm = _call("actuator", "m", 1.5, node="node-1", prompt="PROMPT", response="REPLY")
    failed = _call("architect", "m", 0.5, ok=False, error="no route\nmore")
    rows = [call_row(with_llm), call_row(failed)]
    text = format_logs({"session": "s-1", "node": None, "calls": rows})
    assert "--- prompt ---\n  PROMPT" in text and "--- response ---\n  REPLY" in text
    assert "ERROR no route" in text and "more" not in text
    assert text.count("---") == 4  # only the call that has them


def test_text_outputs_say_when_calls_were_unpriced() -> None:
    """Unknown models cost 0 and say so: in status and in the stats, not only in JSON."""
    status = format_status({**STATUS, "totals": {**STATUS["totals"], "unpriced": 2}})
    assert "$0.0123 (2 calls unpriced)" in status
    assert "unpriced" not in format_status(
        {**STATUS, "totals": {**STATUS["totals"], "unpriced": 0}}
    )
    calls = [
        _call("actuator", "openai:gpt-4.1", 1.0),
        _call("architect", "local:x", 1.0, priced=False, cost_usd=0.0),
    ]
    text = format_logs({"session": "s-1", "node": None, "stats": call_stats(calls)})
    total, *groups = text.splitlines()[3:]
    assert total.startswith("total") and total.endswith("(1 call unpriced)")
    assert [g.endswith("(1 call unpriced)") for g in groups] == [False, True, False, True]


def test_logs_show_prompt_and_reply_sizes() -> None:
    sized = _call("actuator", "m", 1.0, prompt_chars=812, reply_chars=12_345)
    old = _call("actuator", "m", 1.0)  # recorded before sizes were: unknown, not 0
    rows = [call_row(call) for call in (sized, old)]
    text = format_logs({"session": "s-1", "node": None, "calls": rows})
    header, first, second = text.splitlines()[2:]
    assert "prompt" in header and "reply" in header
    assert "    812  12.3k" in first and "      -      -" in second
    stats = call_stats([sized, old])["total"]
    assert (stats["prompt_chars"], stats["reply_chars"]) == (812, 12_345)


def test_step_ids_parse_back_to_transcript_keys() -> None:
    assert parse_step_id("model:architect:-:1") == ("architect", None, 1)
    assert parse_step_id("model:actuator:node-2:3") == ("actuator", "node-2", 3)
    assert parse_step_id("model:actuator:odd:id:2") == ("actuator", "odd:id", 2)
    assert parse_step_id("commit:node-1") is None
    assert parse_step_id("model:actuator:node-1:x") is None


def test_transcript_entries_keep_answered_steps_with_model_and_usage() -> None:
    steps = [
        _step("model:architect:-:1", {"text": "{}", "model": "m"}),
        _step("model:actuator:n1:1", None),  # never answered
        _step("model:actuator:n2:1", {"text": "x", "model": ""}),
        _step("model:verifier:n2:1", {"text": "y", "model": "replay:/t.jsonl"}),
        _step("model:actuator:n3:1", {"model": "m"}),  # damaged: no text, left out
        _step("model:actuator:n3:2", {"text": 7}),  # damaged: not text, left out
    ]
    calls = [_call("architect", "m", 0.3, input_tokens=7, output_tokens=3)]
    assert transcript_entries(steps, calls) == [
        {
            "tier": "architect",
            "node": None,
            "attempt": 1,
            "text": "{}",
            "model": "m",
            "usage": {"input_tokens": 7, "output_tokens": 3},
        },
        {"tier": "actuator", "node": "n2", "attempt": 1, "text": "x"},
        {"tier": "verifier", "node": "n2", "attempt": 1, "text": "y"},
    ]


def test_status_says_what_confined_the_session() -> None:
    boxed = {"mode": "bubblewrap", "network": False, "memory_mb": 8192, "readonly_paths": []}
    text = format_status({**STATUS, "sandbox": boxed})
    assert "sandbox  bubblewrap, network off, memory 8192 MB" in text
    off = format_status({**STATUS, "sandbox": {"mode": "off", "warning": "sandbox off (...)"}})
    assert "sandbox  OFF: sandbox off (...)" in off
    assert "sandbox" not in format_status(STATUS)  # a session from before sandboxing


def test_status_text_names_the_environment_and_the_baseline() -> None:
    data = {
        **STATUS,
        "environment": {
            "python": {
                "interpreter": "/p/.venv/bin/python",
                "source": ".venv",
                "version": "3.12.1",
                "pytest": False,
            },
            "rust": {"cargo_home": "/h/.cargo", "target_dir": "/p/.keel/cargo-target"},
        },
        "baseline": {
            "head": "0123456789abcdef",
            "reused": True,
            "failing": ["tests/t.py::test_a", "a.py:3", "b.py", "c.py"],
            "degraded": [],
        },
        "nodes": [{**STATUS["nodes"][0], "already_failing": 2}],
    }
    text = format_status(data)
    assert "python   /p/.venv/bin/python (.venv, 3.12.1); pytest NOT installed there" in text
    assert "cargo    home /h/.cargo, target /p/.keel/cargo-target" in text
    assert (
        "baseline 0123456789ab: 4 already failing (tests/t.py::test_a, a.py:3, b.py, … 1 more)"
        " (reused)" in text
    )
    assert "(2 already failing)" in text
    clean = format_status(
        {**STATUS, "baseline": {"head": "abc", "failing": [], "degraded": ["python.tests"]}}
    )
    assert "baseline abc: nothing failing; not measured: python.tests" in clean
    assert "python " not in format_status(STATUS)  # older sessions recorded no environment


def test_escalation_evidence_already_failing_at_baseline_says_so() -> None:
    evidence = [
        {"message": "assert 1 == 3", "baseline": True, "baseline_at": "0123456789abcdef"},
        {"message": "assert 2 == 5"},
    ]
    escalations = [_escalation({"attempts": 1, "reason": "no", "evidence": evidence})]
    [row] = error_rows([], [], escalations, [])
    assert row["evidence"] == ["assert 1 == 3 (already failing at 0123456789ab)", "assert 2 == 5"]


def test_exploration_turns_export_as_tool_call_lines_that_replay() -> None:
    calls = [{"id": "c1", "name": "open_file", "arguments": {"path": "a.py"}}]
    steps = [
        _step("model:architect:-:1", {"text": "", "tool_calls": calls}),
        _step("tool:architect:-:1:turn1:1", {"text": "..."}, kind="tool"),
        _step("model:architect:-:1:turn2", {"text": "{}"}),
    ]
    assert parse_step_id("model:architect:-:1:turn2") == ("architect", None, 1)
    entries = transcript_entries(steps, [])
    assert entries == [
        {
            "tier": "architect",
            "node": None,
            "attempt": 1,
            "turn": 1,
            "tool_calls": [{"name": "open_file", "arguments": {"path": "a.py"}}],
        },
        {"tier": "architect", "node": None, "attempt": 1, "text": "{}"},
    ]
    indexed = index_entries(entries, "export")  # a valid transcript: turn 2 gets the answer
    found = select_entry(indexed, ("architect", None, 1), 2, False)
    assert found is not None and found.text == "{}"


def test_stored_events_become_records_and_a_broken_one_is_named() -> None:
    committed = {"type": "node_committed", "node": "n1", "ledger": "a" * 40, "files": [], "v": 0}
    failed = {"ts": "t", "session": "s", "type": "node_failed", "node": "n2", "reason": "dep"}
    rows = [EventRecord(i, str(e["type"]), e, "t") for i, e in enumerate((committed, failed))]
    [record] = stored_events(rows, {EventKind.NODE_FAILED})
    assert record == NodeFailed(node="n2", reason="dep", ts="t", session="s")
    # Only the kinds asked for are read: an event of a later Keel elsewhere does not matter.
    later = EventRecord(3, "node_paused", {"type": "node_paused", "node": "n1"}, "t")
    assert stored_events([*rows, later], {EventKind.NODE_FAILED}) == [record]
    broken = EventRecord(4, "node_failed", {"type": "node_failed", "node": "n3"}, "t")
    with pytest.raises(EventError, match="node_failed event: missing key 'reason'"):
        stored_events([broken], {EventKind.NODE_FAILED})
