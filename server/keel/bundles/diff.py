"""Unified diffs of a change set, for prompts, terminal review and the editor's diff view."""

from __future__ import annotations

import difflib
from collections.abc import Mapping


def _lines(data: bytes | None) -> list[str]:
    if data is None:
        return []
    return data.decode(errors="replace").splitlines(keepends=True)


def unified_diff(path: str, before: bytes | None, after: bytes | None) -> str:
    """A ``git diff``-style patch of one file (``/dev/null`` for creation and deletion)."""
    old_name = "/dev/null" if before is None else f"a/{path}"
    new_name = "/dev/null" if after is None else f"b/{path}"
    lines = difflib.unified_diff(_lines(before), _lines(after), old_name, new_name)
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )


def change_set_diff(changes: Mapping[str, bytes | None], base: Mapping[str, bytes | None]) -> str:
    """One patch for every file of a change set, in path order."""
    return "".join(unified_diff(path, base.get(path), changes[path]) for path in sorted(changes))


def changed_lines(changes: Mapping[str, bytes | None], base: Mapping[str, bytes | None]) -> int:
    """How many lines a change set adds or removes (a size measure for approval policy)."""
    count = 0
    for path in changes:
        lines = difflib.unified_diff(_lines(base.get(path)), _lines(changes[path]), n=0)
        # Skip the two file headers by position: an added "++i" or removed "--x" line looks
        # like a header ("+++i", "---x") but is a change.
        for line in list(lines)[2:]:
            if line.startswith(("+", "-")):
                count += 1
    return count
