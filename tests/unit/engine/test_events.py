"""Typed events: one record per kind, the same JSON on the wire as before, strict parsing."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError, replace
from typing import Any

import pytest

from keel.engine import events as ev
from keel.engine.models import Component, Energy, Residual
from keel.engine.redaction import Redactor
from tests.unit.event_samples import ENERGY, OLD, SAMPLES


class _Store:
    """A session's records, scoped as the store hands them to the engine."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.events: list[tuple[str, dict[str, object]]] = []

    async def record_event(self, event: ev.Event) -> None:
        self.events.append((self.session_id, event.to_json()))


class _Sink:
    def __init__(self) -> None:
        self.events: list[ev.Event] = []

    def emit(self, event: ev.Event) -> None:
        self.events.append(event)


def test_every_kind_has_one_record_named_by_its_value() -> None:
    assert set(ev.RECORDS) == set(ev.EventKind)
    for kind, cls in ev.RECORDS.items():
        assert cls.type is kind
    assert {type(e).type for e in SAMPLES} == set(ev.EventKind)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: f"{e.type}-{id(e) % 97}")
def test_records_round_trip_through_json(event: ev.Event) -> None:
    stamped = event.stamped("2026-11-22T10:15:00.101Z", "s-1")
    wire = json.loads(json.dumps(stamped.to_json()))
    assert list(wire)[:3] == ["ts", "session", "type"]
    assert wire["type"] == event.type.value
    assert ev.parse_event(wire) == stamped
    assert ev.parse_event(event.to_json()) == event


def test_the_wire_format_is_unchanged() -> None:
    """Keys and order as ``keel agent --json`` printed them before the records existed."""
    node = replace(SAMPLES[10], ts="t", session="s")
    assert isinstance(node, ev.Verification)
    assert list(node.to_json()) == [
        "ts",
        "session",
        "type",
        "node",
        "attempt",
        *ENERGY,
        "epsilon",
        "stable",
        "degraded",
        "evidence",
    ]
    sheaf = SAMPLES[11].to_json()
    assert list(sheaf)[:3] == ["type", "node", "stage"] and sheaf["node"] is None
    assert "attempt" not in sheaf
    committed = ev.NodeCommitted(node="n", ledger="abc", files=["a.py"], v=0.0)
    assert committed.to_json() == {
        "type": "node_committed",
        "node": "n",
        "ledger": "abc",
        "files": ["a.py"],
        "v": 0.0,
    }
    assert replace(committed, recovered=True).to_json()["recovered"] is True
    finished = SAMPLES[-1].to_json()
    assert list(finished) == ["type", "outcome", "reason", "budget_exceeded", "totals", "nodes"]
    assert list(finished["totals"]) == [  # type: ignore[call-overload]
        "calls",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "unpriced",
        "wall_time_s",
        "nodes",
        "committed",
    ]
    ready = SAMPLES[5].to_json()
    assert ready["nodes"] == [
        {"id": "node-1", "title": "calc", "kind": "code", "owns": ["calc.py"], "depends_on": []}
    ]


def test_verification_is_built_from_an_energy() -> None:
    energy = Energy(
        components={Component.LOG: 2.0, Component.BOOT: 1.0},
        evidence=(Residual(Component.LOG, "boom", "pytest"),),
        degraded_sensors=("ty",),
    )
    event = ev.verification(energy, node="n", attempt=2, epsilon=0.1, stable=False, evidence=[])
    assert (event.v_log, event.v_boot, event.v, event.attempt) == (2.0, 1.0, 3.0, 2)
    assert event.degraded == ["ty"] and event.stage is None
    assert event.components() == energy.as_dict()  # what views and reports read back


def test_records_are_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        SAMPLES[0].task = "other"  # type: ignore[misc, attr-defined]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "node_explode", "node": "n"}, "unknown event type 'node_explode'"),
        ({"node": "n"}, "unknown event type None"),
        ({"type": "node_failed", "node": "n"}, "node_failed event: missing key 'reason'"),
        (
            {"type": "node_failed", "node": "n", "reason": "r", "extra": 1},
            "node_failed event: unknown key",
        ),
        ({"type": "node_failed", "node": 3, "reason": "r"}, "node should be str, not 3"),
        ({"type": "node_retrying", "node": "n", "attempt": True, "v": 1.0}, "attempt should be"),
        ({"type": "node_retrying", "node": "n", "attempt": 1.5, "v": 1.0}, "attempt should be"),
        ({"type": "node_retrying", "node": "n", "attempt": 2, "v": "1"}, "v should be float"),
        ({"type": "plan_invalid", "attempt": 1, "errors": "bad"}, "errors should be a list"),
        ({"type": "plan_invalid", "attempt": 1, "errors": [1]}, r"errors\[0\] should be str"),
        ({"type": "plan_ready", "nodes": [{"id": "n"}]}, r"nodes\[0\]: missing key 'title'"),
        (
            {"type": "explore", "tool": "t", "arguments": [], "chars": 1, "refused": 0, "tier": ""},
            "arguments should be an object",
        ),
    ],
)
def test_parse_event_refuses_what_is_not_a_record(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ev.EventError, match=message):
        ev.parse_event(data)


def test_parse_event_refuses_what_is_not_an_object() -> None:
    for data in (["node_failed"], "node_failed", None):
        with pytest.raises(ev.EventError, match="an event is a JSON object"):
            ev.parse_event(data)  # type: ignore[arg-type]


def test_parse_event_accepts_an_integer_where_json_wrote_a_float() -> None:
    event = ev.parse_event({"type": "node_retrying", "node": "n", "attempt": 2, "v": 3})
    assert isinstance(event, ev.NodeRetrying) and event.v == 3


async def test_the_log_stamps_stores_and_sends_the_same_object() -> None:
    store, sink = _Store("s-1"), _Sink()
    log = ev.EventLog("s-1", store, sink)  # type: ignore[arg-type]
    await log.emit(ev.NodeStarted(node="n", title="t", kind="code"))
    [(session, stored)] = store.events
    [sent] = sink.events
    assert session == "s-1" and sent.session == "s-1" and sent.ts
    assert stored == sent.to_json()
    assert list(stored) == ["ts", "session", "type", "node", "title", "kind"]


async def test_the_log_redacts_every_string_but_its_own_stamps() -> None:
    secret = "hunter2-but-longer"
    store, sink = _Store("s-1"), _Sink()
    log = ev.EventLog("s-1", store, sink, Redactor({"DEPLOY_TOKEN": secret}))  # type: ignore[arg-type]
    leaky = {**OLD, "message": f"token {secret}"}
    await log.emit(
        ev.NodeEscalated(
            node="n",
            title=f"uses {secret}",
            attempts=1,
            energy=ENERGY,
            evidence=[leaky],
            degraded=[],
            reason="no",
        )
    )
    log.announce(ev.PlanInvalid(attempt=1, errors=[f"bad {secret}"]))
    assert secret not in json.dumps([s for _, s in store.events])
    assert secret not in json.dumps([e.to_json() for e in sink.events])
    escalated, invalid = sink.events
    assert isinstance(escalated, ev.NodeEscalated)
    assert escalated.evidence[0]["message"] == "token [redacted]"
    assert escalated.energy == ENERGY and escalated.session == "s-1"
    # Sent to the sink only, unstamped, as ``plan_invalid`` always was.
    assert invalid.to_json() == {"type": "plan_invalid", "attempt": 1, "errors": ["bad [redacted]"]}
    assert len(store.events) == 1
