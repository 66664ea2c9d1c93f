"""Hunks of a bundle: stable ids, any subset applies, bytes kept (keel.bundles.hunks)."""

from __future__ import annotations

import itertools
import random

import pytest

from keel.bundles.hunks import Hunk, apply_file, bundle_hunks, file_hunks, split, split_lines

BEFORE = b"one\ntwo\nthree\nfour\nfive\nsix\nseven\n"
AFTER = b"one\nTWO\nthree\nfour\nfive\nsix\nseven\neight\n"


def test_two_regions_are_two_hunks_with_unified_diff_numbers() -> None:
    first, second = file_hunks("a.py", BEFORE, AFTER)
    assert (first.old_start, first.old_lines, first.new_start, first.new_lines) == (2, 1, 2, 1)
    assert first.header == "@@ -2,1 +2,1 @@"
    assert (first.removed, first.added) == (("two",), ("TWO",))
    # a pure insertion: oldStart is the line after which it goes
    assert (second.old_start, second.old_lines, second.new_start, second.new_lines) == (7, 0, 8, 1)
    assert (second.removed, second.added) == ((), ("eight",))
    assert len({first.id, second.id}) == 2
    assert all(len(h.id) == 12 and int(h.id, 16) >= 0 for h in (first, second))


def test_a_pure_deletion_at_the_top_starts_after_line_zero() -> None:
    (hunk,) = file_hunks("a", b"x\ny\n", b"y\n")
    assert (hunk.old_start, hunk.old_lines, hunk.new_start, hunk.new_lines) == (1, 1, 0, 0)


def test_the_id_is_the_documented_hash() -> None:
    import hashlib

    (hunk,) = file_hunks("p/q.py", b"a\nb\n", b"a\nc\n")
    key = "p/q.py\0b\0c\0" + "0"
    assert hunk.id == hashlib.sha256(key.encode()).hexdigest()[:12]


def test_applying_all_none_and_each_subset() -> None:
    hunks = file_hunks("a.py", BEFORE, AFTER)
    ids = [h.id for h in hunks]
    assert apply_file("a.py", BEFORE, AFTER, ids) == AFTER
    assert apply_file("a.py", BEFORE, AFTER, []) == BEFORE
    assert apply_file("a.py", BEFORE, AFTER, [ids[0]]) == (
        b"one\nTWO\nthree\nfour\nfive\nsix\nseven\n"
    )
    assert apply_file("a.py", BEFORE, AFTER, [ids[1]]) == BEFORE + b"eight\n"


def test_an_id_is_stable_when_other_hunks_are_applied() -> None:
    first, second = file_hunks("a.py", BEFORE, AFTER)
    middle = apply_file("a.py", BEFORE, AFTER, [first.id])
    (rest,) = file_hunks("a.py", middle, AFTER)
    assert rest.id == second.id
    assert rest.header == "@@ -7,0 +8,1 @@"


def test_identical_hunks_are_told_apart_by_their_count() -> None:
    before = b"x\na\nx\nb\nx\n"
    after = b"y\na\ny\nb\ny\n"
    hunks = file_hunks("f", before, after)
    assert len(hunks) == 3 and len({h.id for h in hunks}) == 3
    # the first is committed: the others are renumbered, so ids shift only among twins
    middle = apply_file("f", before, after, [hunks[0].id])
    assert [h.id for h in file_hunks("f", middle, after)] == [hunks[0].id, hunks[1].id]


@pytest.mark.parametrize(
    ("before", "after"),
    [(None, b"new\nfile\n"), (b"old\nfile\n", None), (None, b""), (b"\xff\xfe\x00", b"\xff\x00")],
    ids=["created", "deleted", "created-empty", "binary"],
)
def test_created_deleted_and_binary_files_are_one_whole_hunk(
    before: bytes | None, after: bytes | None
) -> None:
    (hunk,) = file_hunks("f", before, after)
    assert hunk.whole
    assert apply_file("f", before, after, [hunk.id]) == after
    assert apply_file("f", before, after, []) == before


def test_created_file_numbers() -> None:
    (hunk,) = file_hunks("f", None, b"a\nb\n")
    assert hunk.header == "@@ -0,0 +1,2 @@" and hunk.added == ("a", "b")


def test_crlf_and_a_missing_final_newline_keep_their_bytes() -> None:
    before = b"a\r\nb\r\nc\r\nd"
    after = b"a\r\nB\r\nc\r\nD"
    first, second = file_hunks("w.txt", before, after)
    assert first.removed == ("b",) and first.added == ("B",)
    assert apply_file("w.txt", before, after, [first.id]) == b"a\r\nB\r\nc\r\nd"
    assert apply_file("w.txt", before, after, [second.id]) == b"a\r\nb\r\nc\r\nD"
    assert apply_file("w.txt", before, after, [first.id, second.id]) == after


def test_a_line_ending_change_is_a_hunk() -> None:
    (hunk,) = file_hunks("f", b"a\nb", b"a\nb\n")
    assert hunk.removed == ("b",) and hunk.added == ("b",)
    assert apply_file("f", b"a\nb", b"a\nb\n", [hunk.id]) == b"a\nb\n"


def test_an_empty_line_removed_and_one_added_are_twins_with_two_ids() -> None:
    before, after = b"a\n\nb\n", b"a\nb\n\n"
    hunks = file_hunks("f", before, after)
    assert len(hunks) == 2 and len({h.id for h in hunks}) == 2


def test_an_unchanged_file_has_no_hunks() -> None:
    assert file_hunks("f", b"same\n", b"same\n") == []


def test_split_lines_keeps_every_byte() -> None:
    data = b"a\r\n\nb\rc\nd"
    assert b"".join(split_lines(data)) == data
    assert split_lines(b"") == []


def test_split_chooses_across_files() -> None:
    changes = {"a.py": AFTER, "new.py": b"n\n", "gone.py": None}
    base = {"a.py": BEFORE, "new.py": None, "gone.py": b"g\n"}
    hunks = bundle_hunks(changes, base)
    assert [h.path for h in hunks] == ["a.py", "a.py", "gone.py", "new.py"]
    parts = split(changes, base, [hunks[0].id, hunks[3].id])
    assert parts.chosen == {
        "a.py": apply_file("a.py", BEFORE, AFTER, [hunks[0].id]),
        "new.py": b"n\n",
    }
    assert parts.chosen_base == {"a.py": BEFORE, "new.py": None}
    assert parts.rest == {"a.py": AFTER, "gone.py": None}
    assert parts.rest_base == {"a.py": parts.chosen["a.py"], "gone.py": b"g\n"}
    assert [h.id for h in parts.hunks] == [hunks[0].id, hunks[3].id]
    # the rest keeps its ids
    assert [h.id for h in bundle_hunks(parts.rest, parts.rest_base)] == [
        hunks[1].id,
        hunks[2].id,
    ]


def _key(hunk: Hunk) -> tuple[str, str]:
    return "\n".join(hunk.removed), "\n".join(hunk.added)


def _random_text(rng: random.Random) -> bytes:
    words = [b"a", b"b", b"c", b"d", b"e", b""]
    ending = rng.choice([b"\n", b"\r\n"])
    lines = [rng.choice(words) for _ in range(rng.randint(0, 12))]
    text = ending.join(lines)
    return text + ending if lines and rng.random() < 0.7 else text


def _mutate(rng: random.Random, data: bytes) -> bytes:
    lines = split_lines(data)
    for _ in range(rng.randint(0, 5)):
        where = rng.randint(0, len(lines))
        action = rng.random()
        if action < 0.4:
            lines.insert(where, rng.choice([b"x\n", b"y\r\n", b"a\n", b"z"]))
        elif lines and action < 0.7:
            del lines[min(where, len(lines) - 1)]
        elif lines:
            lines[min(where, len(lines) - 1)] = rng.choice([b"q\n", b"b\n", b"r"])
    return b"".join(lines)


def test_property_any_subset_applies_and_ids_are_stable() -> None:
    rng = random.Random(1414)
    for _ in range(400):
        before = _random_text(rng)
        after = _mutate(rng, before)
        hunks = file_hunks("f.txt", before, after)
        ids = [h.id for h in hunks]
        assert len(set(ids)) == len(ids)
        assert apply_file("f.txt", before, after, ids) == after
        assert apply_file("f.txt", before, after, []) == before
        for size in range(len(hunks) + 1):
            for subset in itertools.islice(itertools.combinations(ids, size), 6):
                middle = apply_file("f.txt", before, after, subset)
                assert isinstance(middle, bytes)
                # applying the rest on top of the subset gives the proposal
                rest = file_hunks("f.txt", middle, after)
                assert apply_file("f.txt", middle, after, [h.id for h in rest]) == after
                # every hunk left out keeps its id (when no twin of it was applied)
                left = [h for h in hunks if h.id not in subset]
                twins = {_key(h) for h in hunks if h.id in subset}
                expected = {h.id for h in left if _key(h) not in twins}
                assert expected <= {h.id for h in rest}, (before, after, subset)
