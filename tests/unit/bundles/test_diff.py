"""Unified diffs of change sets (for prompts and review) and their size in changed lines."""

from __future__ import annotations

import pytest

from keel.bundles.diff import change_set_diff, changed_lines, unified_diff


def test_unified_diff_of_a_creation_comes_from_dev_null() -> None:
    assert unified_diff("src/a.py", None, b"x = 1\ny = 2\n") == (
        "--- /dev/null\n+++ b/src/a.py\n@@ -0,0 +1,2 @@\n+x = 1\n+y = 2\n"
    )


def test_unified_diff_of_a_deletion_goes_to_dev_null() -> None:
    assert unified_diff("src/a.py", b"x = 1\n", None) == (
        "--- a/src/a.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-x = 1\n"
    )


def test_unified_diff_of_a_modification_shows_context_and_changes() -> None:
    diff = unified_diff("m.py", b"a\nb\nc\n", b"a\nB\nc\n")
    assert diff == "--- a/m.py\n+++ b/m.py\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"


def test_unified_diff_marks_a_missing_final_newline() -> None:
    diff = unified_diff("m.py", b"a\n", b"a\nb")
    assert diff.endswith("+b\n\\ No newline at end of file\n")


def test_unified_diff_of_identical_content_is_empty() -> None:
    assert unified_diff("m.py", b"same\n", b"same\n") == ""


def test_change_set_diff_concatenates_files_in_path_order() -> None:
    diff = change_set_diff(
        {"z.py": b"z\n", "a.py": None},
        {"z.py": None, "a.py": b"a\n"},
    )
    assert diff.index("--- a/a.py") < diff.index("+++ b/z.py")
    assert diff.count("@@") == 4


@pytest.mark.parametrize(
    ("base", "changes", "expected"),
    [
        ({"a.py": None}, {"a.py": b"1\n2\n3\n"}, 3),  # creation: three added
        ({"a.py": b"1\n2\n"}, {"a.py": None}, 2),  # deletion: two removed
        ({"a.py": b"1\n2\n3\n"}, {"a.py": b"1\nTWO\n3\n"}, 2),  # one replaced: - and +
        ({"a.py": b"1\n"}, {"a.py": b"1\n"}, 0),  # unchanged
        ({"a.py": b"1\n", "b.py": b"x\n"}, {"a.py": b"1\n2\n", "b.py": None}, 2),
        ({"c.c": b"i--;\n"}, {"c.c": b"++i;\n"}, 2),  # lines that look like diff headers
        ({"d.yaml": b"--- \nx: 1\n"}, {"d.yaml": b"x: 1\n"}, 1),
    ],
)
def test_changed_lines_counts_added_and_removed_lines(
    base: dict[str, bytes | None], changes: dict[str, bytes | None], expected: int
) -> None:
    assert changed_lines(changes, base) == expected
