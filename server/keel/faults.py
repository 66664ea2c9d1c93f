"""Named crash points, so tests can kill a real ``keel`` process exactly where it hurts.

``KEEL_FAULT=<point>[:<n>]`` makes the n-th arrival (default the first) at ``<point>`` kill the
process with SIGKILL: no cleanup, no flush, like a power cut. Without the variable a
:class:`Faults` object does nothing but compare a string. The points are listed in
``docs/explanation/sessions.md``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping


class Faults:
    """One process's crash point, read from the environment once."""

    def __init__(self, point: str | None = None, count: int = 1) -> None:
        self._point = point
        self._remaining = count

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Faults:
        spec = env.get("KEEL_FAULT", "")
        if not spec:
            return cls()
        point, _, count = spec.partition(":")
        return cls(point, int(count) if count else 1)

    def hit(self, point: str) -> None:
        """Die here if this is the configured point's n-th arrival."""
        if point != self._point:
            return
        self._remaining -= 1
        if self._remaining <= 0:
            os.kill(os.getpid(), signal.SIGKILL)
