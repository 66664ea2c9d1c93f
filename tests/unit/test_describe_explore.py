"""The terminal line of an ``explore`` event (``keel agent`` without ``--json``)."""

from __future__ import annotations

from dataclasses import replace

from keel.cli import describe_event
from keel.engine.events import Explore


def test_explore_events_are_one_line_each() -> None:
    ran = Explore(
        tool="open_file", arguments={"path": "a.py", "start": 3}, chars=812, refused=False, tier="a"
    )
    assert describe_event(ran) == '[explore] open_file(path="a.py", start=3): 812 chars'
    refused = replace(ran, arguments={"path": ".env"}, chars=60, refused=True)
    assert describe_event(refused) == '[explore] open_file(path=".env"): refused'
    long = replace(ran, arguments={"pattern": "x" * 500}, chars=9)
    assert len(str(describe_event(long))) < 180
