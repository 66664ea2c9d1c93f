"""Applying a model's unified diff to one file: strict context, forgiving line numbers."""

from __future__ import annotations

import pytest

from keel.bundles.diff import unified_diff
from keel.bundles.patch import PatchError, apply_patch

ORIGINAL = "def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a - b\n"


def _patch(path: str, body: str, old: str | None = None, new: str | None = None) -> str:
    return f"--- {old or 'a/' + path}\n+++ {new or 'b/' + path}\n{body}"


def test_applies_a_simple_hunk() -> None:
    patch = _patch(
        "calc.py",
        "@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n",
    )
    assert apply_patch("calc.py", ORIGINAL, patch) == ORIGINAL.replace("a - b", "a + b", 1)


def test_applies_when_header_line_numbers_are_off_but_context_is_unique() -> None:
    # The hunk claims line 40; its context ("def sub") occurs exactly once, at line 5.
    patch = _patch(
        "calc.py",
        "@@ -40,2 +40,2 @@\n def sub(a, b):\n-    return a - b\n+    return a - b - 0\n",
    )
    result = apply_patch("calc.py", ORIGINAL, patch)
    assert result == ORIGINAL[: ORIGINAL.rindex("a - b")] + "a - b - 0\n"


def test_later_hunks_account_for_lines_added_by_earlier_ones() -> None:
    original = "".join(f"line {i}\n" for i in range(1, 11))
    patch = _patch(
        "f.txt",
        "@@ -1,1 +1,3 @@\n line 1\n+extra a\n+extra b\n@@ -9,1 +11,1 @@\n-line 9\n+LINE 9\n",
    )
    result = apply_patch("f.txt", original, patch)
    assert result is not None
    lines = result.splitlines()
    assert lines[:3] == ["line 1", "extra a", "extra b"]
    assert lines[10] == "LINE 9"
    assert len(lines) == 12


def test_context_mismatch_fails_naming_the_hunk() -> None:
    patch = _patch(
        "calc.py",
        "@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"
        "@@ -5,2 +5,2 @@\n def mul(a, b):\n-    return a - b\n+    return a * b\n",
    )
    with pytest.raises(PatchError, match=r"hunk 2 of the patch for calc.py does not apply") as e:
        apply_patch("calc.py", ORIGINAL, patch)
    assert "do not match" in str(e.value)


def test_ambiguous_context_fails_and_asks_for_more_context() -> None:
    # "return a - b" occurs twice and the header points at neither.
    patch = _patch("calc.py", "@@ -30,1 +30,1 @@\n-    return a - b\n+    return 0\n")
    with pytest.raises(PatchError, match=r"hunk 1 .*matches 2 places"):
        apply_patch("calc.py", ORIGINAL, patch)


def test_creates_a_file_from_dev_null() -> None:
    patch = _patch("new.py", "@@ -0,0 +1,2 @@\n+x = 1\n+y = 2\n", old="/dev/null")
    assert apply_patch("new.py", None, patch) == "x = 1\ny = 2\n"


def test_creating_a_file_that_exists_fails() -> None:
    patch = _patch("calc.py", "@@ -0,0 +1 @@\n+x = 1\n", old="/dev/null")
    with pytest.raises(PatchError, match="already exists"):
        apply_patch("calc.py", ORIGINAL, patch)


def test_modifying_a_missing_file_fails() -> None:
    patch = _patch("gone.py", "@@ -1 +1 @@\n-a\n+b\n")
    with pytest.raises(PatchError, match="does not exist"):
        apply_patch("gone.py", None, patch)


def test_deletes_via_plus_plus_plus_dev_null() -> None:
    patch = _patch("old.py", "@@ -1,2 +0,0 @@\n-x = 1\n-y = 2\n", new="/dev/null")
    assert apply_patch("old.py", "x = 1\ny = 2\n", patch) is None


def test_deletion_of_a_different_file_is_refused() -> None:
    patch = _patch("old.py", "@@ -1 +0,0 @@\n-x = 1\n", old="a/other.py", new="/dev/null")
    with pytest.raises(PatchError, match=r"other\.py"):
        apply_patch("old.py", "x = 1\n", patch)


def test_deletion_whose_removed_lines_do_not_match_is_refused() -> None:
    patch = _patch("old.py", "@@ -1 +0,0 @@\n-something else\n", new="/dev/null")
    with pytest.raises(PatchError, match="hunk 1"):
        apply_patch("old.py", "x = 1\n", patch)


def test_refuses_a_patch_whose_target_differs_from_the_item_path() -> None:
    patch = _patch("calc.py", "@@ -1 +1 @@\n-a\n+b\n", new="b/elsewhere.py")
    with pytest.raises(PatchError, match=r"names elsewhere.py in its \+\+\+ header"):
        apply_patch("calc.py", "a\n", patch)


def test_no_newline_marker_on_the_old_side_adds_the_newline() -> None:
    patch = _patch("f.txt", "@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n")
    assert apply_patch("f.txt", "a\nb", patch) == "a\nb\n"


def test_no_newline_marker_on_the_new_side_removes_the_newline() -> None:
    patch = _patch("f.txt", "@@ -1,2 +1,2 @@\n a\n-b\n+c\n\\ No newline at end of file\n")
    assert apply_patch("f.txt", "a\nb\n", patch) == "a\nc"


def test_no_newline_marker_on_both_sides() -> None:
    patch = _patch(
        "f.txt",
        "@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n",
    )
    assert apply_patch("f.txt", "a\nb", patch) == "a\nc"


def test_old_side_without_newline_does_not_match_a_file_that_has_one() -> None:
    patch = _patch("f.txt", "@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n")
    with pytest.raises(PatchError, match="hunk 1"):
        apply_patch("f.txt", "a\nb\n", patch)


@pytest.mark.parametrize(
    "garbage",
    [
        "this is not a patch",
        "",
        "@@ -1 +1 @@\n-a\n+b\n",
        "--- a/f.txt\n+++ b/f.txt\n@@ -1,3 +1,3 @@\n a\n",
    ],
)
def test_garbage_is_a_patch_error(garbage: str) -> None:
    with pytest.raises(PatchError, match=r"patch for f\.txt"):
        apply_patch("f.txt", "a\n", garbage)


def test_a_patch_touching_two_files_is_refused() -> None:
    patch = _patch("f.txt", "@@ -1 +1 @@\n-a\n+b\n") + _patch("g.txt", "@@ -1 +1 @@\n-a\n+b\n")
    with pytest.raises(PatchError, match="exactly one file, not 2"):
        apply_patch("f.txt", "a\n", patch)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (b"a\nb\nc\n", b"a\nB\nc\nd\n"),
        (b"a\nb", b"a\nc"),
        (b"a\nb\n", b"a\nb"),
        (None, b"new\nfile\n"),
        (b"doomed\n", None),
    ],
)
def test_our_own_unified_diff_round_trips(before: bytes | None, after: bytes | None) -> None:
    patch = unified_diff("f.txt", before, after)
    result = apply_patch("f.txt", None if before is None else before.decode(), patch)
    assert result == (None if after is None else after.decode())


# -- what models get wrong in the counts and markers (docs/benchmarks.md, run 9) -------------


def test_wrong_counts_in_a_hunk_header_are_recounted() -> None:
    """Slugify, run 9: "Hunk is shorter than expected" (the header promised more lines)."""
    patch = _patch("f.txt", "@@ -1,7 +1,9 @@\n a\n-b\n+B\n c\n")
    assert apply_patch("f.txt", "a\nb\nc\nd\n", patch) == "a\nB\nc\nd\n"


def test_a_context_line_that_lost_its_space_is_context() -> None:
    """Slugify, run 9: "Hunk diff line expected" for an unmarked line; an empty line too."""
    patch = _patch("f.py", "@@ -1,4 +1,4 @@\ndef f():\n-    return 1\n+    return 2\n\n x = 1\n")
    assert apply_patch("f.py", "def f():\n    return 1\n\nx = 1\n", patch) == (
        "def f():\n    return 2\n\nx = 1\n"
    )


def test_an_unmarked_line_that_is_not_in_the_file_still_does_not_apply() -> None:
    patch = _patch("f.txt", "@@ -1,2 +1,2 @@\nSome prose about the change\n-b\n+B\n")
    with pytest.raises(PatchError, match=r"hunk 1 of the patch for f\.txt does not apply"):
        apply_patch("f.txt", "a\nb\n", patch)


def test_a_hunk_changing_no_line_is_refused() -> None:
    patch = _patch("f.txt", "@@ -1,2 +1,2 @@\n a\n b\n")
    with pytest.raises(PatchError, match=r"hunk 1 of the patch for f\.txt changes no line"):
        apply_patch("f.txt", "a\nb\n", patch)


def test_recounting_keeps_a_removed_line_that_looks_like_a_header() -> None:
    """``--- x`` is a removed ``-- x`` unless a ``+++`` line follows it."""
    patch = _patch("q.sql", "@@ -1,2 +1,1 @@\n--- old comment\n select 1;\n")
    assert apply_patch("q.sql", "-- old comment\nselect 1;\n", patch) == "select 1;\n"


def test_two_hunks_with_wrong_counts_each_apply() -> None:
    patch = _patch("f.txt", "@@ -1,1 +1,1 @@\n-a\n+A\n b\n@@ -9,9 +9,9 @@\n c\n-d\n+D\n")
    assert apply_patch("f.txt", "a\nb\nc\nd\n", patch) == "A\nb\nc\nD\n"


def test_context_that_lost_its_indentation_matches_and_the_file_keeps_it() -> None:
    """Slugify, run 11: a context line ``return ...`` written without its four spaces."""
    original = "def f(x):\n    y = x\n    return y\n\ndef g():\n    return 2\n"
    patch = _patch(
        "f.py",
        "@@ -1,3 +1,3 @@\n def f(x):\n-y = x\n+    y = x + 1\n return y\n",
    )
    assert apply_patch("f.py", original, patch) == (
        "def f(x):\n    y = x + 1\n    return y\n\ndef g():\n    return 2\n"
    )


def test_an_exact_match_wins_over_a_loose_one() -> None:
    original = "if a:\n    x = 1\nx = 1\n"
    patch = _patch("f.py", "@@ -3,1 +3,1 @@\n-x = 1\n+x = 2\n")
    assert apply_patch("f.py", original, patch) == "if a:\n    x = 1\nx = 2\n"


def test_a_loose_match_in_two_places_is_refused() -> None:
    original = "if a:\n    x = 1\nif b:\n    x = 1\n"
    patch = _patch("f.py", "@@ -1,1 +1,1 @@\n-  x = 1\n+    x = 2\n")
    with pytest.raises(PatchError, match="matches 2 places"):
        apply_patch("f.py", original, patch)


def test_a_loose_match_never_matches_other_words() -> None:
    patch = _patch("f.py", "@@ -1,1 +1,1 @@\n-    y = 1\n+    y = 2\n")
    with pytest.raises(PatchError, match="do not match the file"):
        apply_patch("f.py", "x = 1\n", patch)


def test_a_loose_match_keeps_line_endings_apart() -> None:
    """A CRLF file and an LF hunk still do not match: the new lines would mix the endings."""
    patch = _patch("f.py", "@@ -1,1 +1,1 @@\n-x = 1\n+x = 2\n")
    with pytest.raises(PatchError, match="do not match the file"):
        apply_patch("f.py", "  x = 1\r\n", patch)
