"""The terminal line of an ``explore`` event (``keel agent`` without ``--json``)."""

from __future__ import annotations

from keel.cli import describe_event


def test_explore_events_are_one_line_each() -> None:
    ran = {"type": "explore", "tool": "open_file", "arguments": {"path": "a.py", "start": 3}}
    assert (
        describe_event({**ran, "chars": 812, "refused": False})
        == '[explore] open_file(path="a.py", start=3): 812 chars'
    )
    refused = {**ran, "arguments": {"path": ".env"}, "chars": 60, "refused": True}
    assert describe_event(refused) == '[explore] open_file(path=".env"): refused'
    long = {**ran, "arguments": {"pattern": "x" * 500}, "chars": 9, "refused": False}
    assert len(str(describe_event(long))) < 180
