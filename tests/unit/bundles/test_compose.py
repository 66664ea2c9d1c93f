"""``compose``: a change set planned over another, as one change set against the first base."""

from __future__ import annotations

from keel.bundles.apply import ChangeSet, Problem, compose


def test_the_later_content_wins_and_the_base_is_from_before_either() -> None:
    first = ChangeSet(changes={"a.py": b"1", "t.py": b"t"}, base={"a.py": b"0", "t.py": None})
    then = ChangeSet(changes={"a.py": b"2", "b.py": b"b"}, base={"a.py": b"1", "b.py": b"B"})
    both = compose(first, then)
    assert both.changes == {"a.py": b"2", "t.py": b"t", "b.py": b"b"}
    assert both.base == {"a.py": b"0", "t.py": None, "b.py": b"B"}
    assert both.ok


def test_a_path_that_ends_as_it_began_leaves_the_set() -> None:
    created = ChangeSet(changes={"new.py": b"x"}, base={"new.py": None})
    deleted = ChangeSet(changes={"new.py": None}, base={"new.py": b"x"})
    assert compose(created, deleted).changes == {}
    changed = ChangeSet(changes={"a.py": b"2"}, base={"a.py": b"1"})
    back = ChangeSet(changes={"a.py": b"1"}, base={"a.py": b"2"})
    both = compose(changed, back)
    assert (both.changes, both.base) == ({}, {})


def test_problems_of_either_are_kept() -> None:
    bad = ChangeSet(problems=[Problem("path", "../x", "outside")])
    assert not compose(ChangeSet(), bad).ok
    assert not compose(bad, ChangeSet()).ok
