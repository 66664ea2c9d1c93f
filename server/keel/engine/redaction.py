"""Secrets out of everything Keel keeps: known key values and key-shaped strings.

Why here, in the engine: the gateway scrubs what it knows is model text, the store scrubs every
record before it is written, and the reports scrub again on read. All three must agree on what
a secret is, and the engine is the one package every one of them may import.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

#: Environment variables whose values are credentials by their name.
SECRET_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET", "_PASSWORD")
#: Shorter values are not redacted: replacing "1" or "yes" everywhere would wreck the records.
MIN_SECRET_LENGTH = 8
REDACTED = "[redacted]"

# Key-shaped strings; the look-behind keeps words like "risk-assessment" intact.
_KEY_SHAPED = re.compile(
    r"(?<![A-Za-z0-9])(sk-ant-[A-Za-z0-9_\-]{8,}|sk-[A-Za-z0-9_\-]{8,})|Bearer\s+\S+"
)


def secrets_in(env: Mapping[str, str]) -> dict[str, str]:
    """Environment values that look like credentials (``*_API_KEY``, ``*_TOKEN``, ...)."""
    return {k: v for k, v in env.items() if k.upper().endswith(SECRET_SUFFIXES) and v}


class Redactor:
    """Replaces known secret values and key-shaped strings with ``[redacted]``."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        values = {v for v in secrets.values() if len(v) >= MIN_SECRET_LENGTH}
        self._values = sorted(values, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, REDACTED)
        return _KEY_SHAPED.sub(REDACTED, text)


def redact(value: Any, redactor: Callable[[str], str]) -> Any:
    """``value`` with every string inside it (mapping values, list items) redacted.

    Structures are scrubbed before they are serialised, never as JSON text: a secret holding a
    quote or a backslash is escaped in JSON and would slip past a text replacement.
    """
    if isinstance(value, str):
        return redactor(value)
    if isinstance(value, Mapping):
        return {key: redact(item, redactor) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact(item, redactor) for item in value]
    return value
