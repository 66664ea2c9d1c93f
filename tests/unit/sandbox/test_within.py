"""``_within`` decides which directories the sandbox hides and binds back: by path parts."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.sandbox.bwrap import _within


@pytest.mark.parametrize(
    ("path", "parent", "expected"),
    [
        ("/home/me", "/home/me", True),
        ("/home/me/.cargo/bin", "/home/me", True),
        ("/home/me", "/", True),
        ("/", "/", True),
        ("/home/meow", "/home/me", False),  # a sibling sharing a prefix is not inside
        ("/home", "/home/me", False),
        ("/tmp/x", "/home", False),
        ("relative/dir", "/", False),
        ("home/me", "/home", False),
    ],
)
def test_within_is_by_whole_parts(path: str, parent: str, expected: bool) -> None:
    assert _within(Path(path), Path(parent)) is expected
    # The same answer as the definition it replaces, which built every parent.
    assert (Path(path) == Path(parent) or Path(parent) in Path(path).parents) is expected
