"""What a typed event costs Keel on its way out: the records of ``keel.engine.events``.

Every ``EventLog.emit`` redacts the record (its JSON object, parsed back into a record, so
what reaches the store and the sink is checked against the record's types), stamps it and
hands it to the store and the sink, which serialise it with ``to_json``. A node emits about
six events, so this must stay far below Keel's per-node target (50 ms).

For one record of every kind (``tests/unit/event_samples.py``, the verification carrying
eight evidence items): the median over RUNS of redact + parse, ``to_json`` + ``json.dumps``
(the ``--json`` line and the store's payload), and ``parse_event`` of a stored payload.

Run: ``.venv/bin/python bench/events.py [RUNS]``; prints figures, asserts nothing.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.unit.event_samples import OLD, SAMPLES

from keel.engine import events as ev
from keel.engine.redaction import Redactor, redact

REPEAT = 200


def _samples() -> list[ev.Event]:
    evidence = [{**OLD, "message": f"assert {i} == {i + 1}\n" + "x" * 400} for i in range(8)]
    return [replace(e, evidence=evidence) if isinstance(e, ev.Verification) else e for e in SAMPLES]


def _per_event(runs: int, work: Callable[[ev.Event], object], events: list[ev.Event]) -> float:
    """Median microseconds per event of ``work`` over ``runs`` rounds of every sample."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(REPEAT):
            for event in events:
                work(event)
        times.append((time.perf_counter() - start) / (REPEAT * len(events)))
    return statistics.median(times) * 1e6


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    events = _samples()
    redactor = Redactor({"DEPLOY_TOKEN": "not-a-real-secret-value"})
    stored = {id(e): e.stamped("2026-11-22T10:15:00.101Z", "s-1").to_json() for e in events}
    figures = {
        "redact + parse (emit)": lambda e: ev.parse_event(redact(e.to_json(), redactor)),
        "to_json + json.dumps": lambda e: json.dumps(e.to_json(), default=str),
        "parse_event (stored)": lambda e: ev.parse_event(stored[id(e)]),
    }
    print(f"{len(events)} records, one of every kind ({runs} runs of {REPEAT} rounds)")
    for name, work in figures.items():
        print(f"  {name:<24} median {_per_event(runs, work, events):7.1f} µs per event")


if __name__ == "__main__":
    main()
