"""Bundle application: plan every change in memory, collect every problem, then write."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from keel.bundles.apply import ChangeSet, plan_changes, write_changes
from keel.bundles.atomic import write_atomically
from keel.bundles.model import ArtifactBundle, FileDiff, FileWrite

CALC = "def add(a, b):\n    return a - b\n"
CALC_FIX = "--- a/src/calc.py\n+++ b/src/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n"
CALC_FIX += "-    return a - b\n+    return a + b\n"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "calc.py").write_text(CALC)
    (tmp_path / "src" / "old.py").write_text("OLD = 1\n")
    (tmp_path / "README.md").write_text("readme\n")
    return tmp_path


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_plan_changes_computes_writes_diffs_and_deletes_without_touching_disk(
    tree: Path,
) -> None:
    before = _snapshot(tree)
    bundle = ArtifactBundle(
        writes=[FileWrite(path="src/new.py", content="NEW = 2\n")],
        diffs=[FileDiff(path="src/calc.py", patch=CALC_FIX)],
        deletes=["src/old.py"],
    )
    plan = plan_changes(tree, bundle, owns=["src/"])

    assert plan.ok, plan.problems
    assert plan.changes == {
        "src/new.py": b"NEW = 2\n",
        "src/calc.py": CALC.replace("a - b", "a + b").encode(),
        "src/old.py": None,
    }
    assert plan.base == {
        "src/new.py": None,
        "src/calc.py": CALC.encode(),
        "src/old.py": b"OLD = 1\n",
    }
    assert _snapshot(tree) == before


def test_write_outside_ownership_is_an_ownership_problem_and_nothing_is_written(
    tree: Path,
) -> None:
    before = _snapshot(tree)
    bundle = ArtifactBundle(writes=[FileWrite(path="README.md", content="hijacked\n")])
    plan = plan_changes(tree, bundle, owns=["src/calc.py"])

    assert not plan.ok
    assert [(p.kind, p.path) for p in plan.problems] == [("ownership", "README.md")]
    assert "not owned" in plan.problems[0].message
    assert "README.md" not in plan.changes
    assert _snapshot(tree) == before


def test_ownership_of_a_directory_does_not_cover_a_sibling_with_a_common_prefix(
    tree: Path,
) -> None:
    bundle = ArtifactBundle(writes=[FileWrite(path="src2/x.py", content="")])
    plan = plan_changes(tree, bundle, owns=["src"])
    assert [p.kind for p in plan.problems] == ["ownership"]


def test_good_write_and_bad_patch_reports_only_the_patch(tree: Path) -> None:
    bad = "--- a/src/calc.py\n+++ b/src/calc.py\n@@ -1 +1 @@\n-nothing like this\n+x\n"
    bundle = ArtifactBundle(
        writes=[FileWrite(path="src/new.py", content="NEW = 2\n")],
        diffs=[FileDiff(path="src/calc.py", patch=bad)],
    )
    plan = plan_changes(tree, bundle, owns=["src"])

    assert plan.ok is False
    assert [(p.kind, p.path) for p in plan.problems] == [("patch", "src/calc.py")]
    assert "hunk 1" in plan.problems[0].message
    assert not (tree / "src" / "new.py").exists()


def test_every_problem_is_collected_not_just_the_first(tree: Path) -> None:
    bundle = ArtifactBundle(
        writes=[
            FileWrite(path="../escape.py", content=""),
            FileWrite(path="README.md", content=""),
            FileWrite(path="src/fine.py", content="ok\n"),
        ],
        diffs=[FileDiff(path="src/calc.py", patch="garbage")],
        deletes=["src/missing.py", ".git/config"],
    )
    plan = plan_changes(tree, bundle, owns=["src"])

    assert sorted((p.kind, p.path) for p in plan.problems) == [
        ("ownership", "README.md"),
        ("patch", "src/calc.py"),
        ("patch", "src/missing.py"),
        ("path", "../escape.py"),
        ("path", ".git/config"),
    ]
    assert plan.changes == {"src/fine.py": b"ok\n"}


def test_the_same_path_twice_is_a_problem(tree: Path) -> None:
    bundle = ArtifactBundle(
        writes=[FileWrite(path="src/calc.py", content="one\n")],
        diffs=[FileDiff(path="./src/calc.py", patch=CALC_FIX)],
    )
    plan = plan_changes(tree, bundle, owns=["src"])
    assert [(p.kind, p.path) for p in plan.problems] == [("path", "src/calc.py")]
    assert "twice" in plan.problems[0].message


def test_the_same_full_write_twice_is_one_write(tree: Path) -> None:
    """A small model repeated a write word for word (docs/benchmarks.md, run 6)."""
    same = FileWrite(path="src/calc.py", content="one\n")
    plan = plan_changes(tree, ArtifactBundle(writes=[same, same]), owns=["src"])
    assert plan.problems == [] and plan.changes == {"src/calc.py": b"one\n"}


def test_two_different_writes_of_one_path_are_still_a_problem(tree: Path) -> None:
    writes = [
        FileWrite(path="src/calc.py", content="one\n"),
        FileWrite(path="./src/calc.py", content="two\n"),
    ]
    plan = plan_changes(tree, ArtifactBundle(writes=writes), owns=["src"])
    assert [(p.kind, p.path) for p in plan.problems] == [("path", "src/calc.py")]


def test_a_file_written_in_full_and_deleted_is_replaced(tree: Path) -> None:
    """Greet, run 13: a correct rewrite of greet.py with greet.py in deletes too."""
    bundle = ArtifactBundle(
        writes=[FileWrite(path="src/calc.py", content="one\n")],
        deletes=["./src/calc.py"],
    )
    plan = plan_changes(tree, bundle, owns=["src"])
    assert plan.problems == [] and plan.changes == {"src/calc.py": b"one\n"}
    created = ArtifactBundle(
        writes=[FileWrite(path="src/new.py", content="n\n")], deletes=["src/new.py"]
    )
    plan = plan_changes(tree, created, owns=["src"])
    assert plan.problems == [] and plan.changes == {"src/new.py": b"n\n"}


def test_a_file_given_a_diff_and_deleted_is_still_a_problem(tree: Path) -> None:
    bundle = ArtifactBundle(
        diffs=[FileDiff(path="src/calc.py", patch=CALC_FIX)], deletes=["src/calc.py"]
    )
    plan = plan_changes(tree, bundle, owns=["src"])
    assert [(p.kind, p.path) for p in plan.problems] == [("path", "src/calc.py")]


def test_deleting_a_missing_file_is_a_problem(tree: Path) -> None:
    plan = plan_changes(tree, ArtifactBundle(deletes=["src/nope.py"]), owns=["src"])
    assert [p.path for p in plan.problems] == ["src/nope.py"]
    assert "does not exist" in plan.problems[0].message


def test_a_directory_is_not_a_file(tree: Path) -> None:
    (tree / "src" / "pkg").mkdir()
    bundle = ArtifactBundle(writes=[FileWrite(path="src/pkg", content="x")])
    plan = plan_changes(tree, bundle, owns=["src"])
    assert [(p.kind, p.path) for p in plan.problems] == [("path", "src/pkg")]


def test_a_patch_on_a_binary_file_is_a_problem_not_a_crash(tree: Path) -> None:
    (tree / "src" / "blob.bin").write_bytes(b"\xff\xfe\x00")
    patch = "--- a/src/blob.bin\n+++ b/src/blob.bin\n@@ -1 +1 @@\n-x\n+y\n"
    bundle = ArtifactBundle(diffs=[FileDiff(path="src/blob.bin", patch=patch)])
    plan = plan_changes(tree, bundle, owns=["src"])
    assert [(p.kind, p.path) for p in plan.problems] == [("patch", "src/blob.bin")]


def test_content_hash_is_stable_across_dict_order() -> None:
    one = ChangeSet(changes={"a.py": b"A", "b.py": b"B", "c.py": None})
    two = ChangeSet(changes={"c.py": None, "b.py": b"B", "a.py": b"A"})
    assert one.content_hash() == two.content_hash()


@pytest.mark.parametrize(
    "other",
    [
        {"a.py": b"A", "b.py": b"b"},  # different content
        {"a.py": b"A", "c.py": b"B"},  # different path
        {"a.py": b"A", "b.py": None},  # delete instead of write
        {"a.py": b"A", "b.py": b""},  # empty file instead of write
        {"a.py": b"A"},  # fewer files
    ],
)
def test_content_hash_differs_for_different_changes(other: dict[str, bytes | None]) -> None:
    base = ChangeSet(changes={"a.py": b"A", "b.py": b"B"})
    assert ChangeSet(changes=other).content_hash() != base.content_hash()


def test_write_changes_writes_creates_and_deletes(tree: Path) -> None:
    write_changes(
        tree,
        {"src/calc.py": b"fixed\n", "src/deep/er/new.py": b"new\n", "src/old.py": None},
    )
    assert (tree / "src" / "calc.py").read_bytes() == b"fixed\n"
    assert (tree / "src" / "deep" / "er" / "new.py").read_bytes() == b"new\n"
    assert not (tree / "src" / "old.py").exists()


def test_write_changes_leaves_no_temporary_files(tree: Path) -> None:
    write_changes(tree, {"src/calc.py": b"fixed\n", "src/new.py": b"new\n"})
    assert sorted(os.listdir(tree / "src")) == ["calc.py", "new.py", "old.py"]


def test_write_changes_preserves_an_existing_files_mode(tree: Path) -> None:
    script = tree / "src" / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    write_changes(tree, {"src/run.sh": b"#!/bin/sh\necho hi\n"})
    assert script.read_bytes() == b"#!/bin/sh\necho hi\n"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755


def test_write_changes_gives_new_files_a_regular_mode(tree: Path) -> None:
    write_changes(tree, {"src/new.py": b"x\n"})
    assert stat.S_IMODE((tree / "src" / "new.py").stat().st_mode) == 0o644


def test_write_atomically_replaces_the_inode_rather_than_writing_in_place(tree: Path) -> None:
    target = tree / "src" / "calc.py"
    before = target.stat().st_ino
    write_atomically(target, b"replaced\n")
    assert target.read_bytes() == b"replaced\n"
    assert target.stat().st_ino != before


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write_atomically(tree / "src" / "calc.py", b"half\n")
    assert (tree / "src" / "calc.py").read_text() == CALC
    assert sorted(os.listdir(tree / "src")) == ["calc.py", "old.py"]
