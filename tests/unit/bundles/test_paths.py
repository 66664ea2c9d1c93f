"""Which workspace-relative paths a bundle may name, and where they may resolve to."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from keel.bundles.paths import PathError, check_location, escape, normalize, resolve_inside


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a/b.py", "a/b.py"),
        ("./a.py", "a.py"),
        ("a//b.py", "a/b.py"),
        ("src/./pkg/mod.py", "src/pkg/mod.py"),
    ],
)
def test_normalize_returns_the_canonical_relative_form(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (".", "names no file"),
        ("/etc/passwd", "absolute"),
        ("../x", "'..'"),
        ("a/../../x", "'..'"),
        (".git/config", ".git/ is reserved"),
        ("./.git/HEAD", ".git/ is reserved"),
        (".keel/keel.db", ".keel/ is reserved"),
        ("a\\b.py", "'/' separators"),
        ("a\0b.py", "NUL"),
    ],
)
def test_normalize_refuses_paths_a_bundle_may_not_name(raw: str, why: str) -> None:
    with pytest.raises(PathError) as info:
        normalize(raw)
    assert why in str(info.value)


def test_resolve_inside_returns_the_location_under_the_root(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    assert resolve_inside(tmp_path, "src/a.py") == tmp_path.resolve() / "src" / "a.py"


def test_resolve_inside_accepts_a_symlink_that_stays_inside(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    assert resolve_inside(tmp_path, "alias/a.py") == tmp_path.resolve() / "real" / "a.py"


def test_resolve_inside_refuses_a_symlinked_directory_pointing_outside(tmp_path: Path) -> None:
    root = tmp_path / "workspace"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PathError, match="outside the workspace"):
        resolve_inside(root, "link/x.py")


def test_resolve_inside_refuses_a_symlinked_file_pointing_outside(tmp_path: Path) -> None:
    root = tmp_path / "workspace"
    root.mkdir()
    (tmp_path / "secret").write_text("s")
    (root / "innocent.py").symlink_to(tmp_path / "secret")
    with pytest.raises(PathError, match="outside the workspace"):
        resolve_inside(root, "innocent.py")


def test_resolve_inside_refuses_a_symlink_into_git(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "hooks").symlink_to(tmp_path / ".git", target_is_directory=True)
    with pytest.raises(PathError, match=r"\.git/"):
        resolve_inside(tmp_path, "hooks/config")


def test_normalize_refuses_control_characters_and_names_over_name_max() -> None:
    with pytest.raises(PathError, match=r"control character \\x1b"):
        normalize("a\x1b[2J.py")
    with pytest.raises(PathError, match="control character"):
        normalize("a\u0085.py")  # C1 too
    with pytest.raises(PathError, match="over the 255-byte limit"):
        normalize("d/" + "é" * 128 + ".py")  # 256 bytes in UTF-8, 129 characters
    assert normalize("d/" + "n" * 255) == "d/" + "n" * 255


def test_resolve_inside_refuses_a_path_over_path_max(tmp_path: Path) -> None:
    with pytest.raises(PathError, match="4096-byte limit"):
        resolve_inside(tmp_path, "/".join(["d" * 250] * 17))


def test_escape_shows_control_characters_and_keeps_what_is_asked() -> None:
    assert escape("a\x1b[2Jb\tc\n") == "a\\x1b[2Jb\\tc\\n"
    assert escape("a\x1b[2Jb\tc\n", keep="\n\t") == "a\\x1b[2Jb\tc\n"
    assert escape("plain é") == "plain é"


def test_check_location_refuses_what_the_tree_cannot_hold(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "calc.py").write_text("x\n")
    (tmp_path / "link").symlink_to("src")
    with pytest.raises(PathError, match=r"src/calc\.py is an existing file"):
        check_location(tmp_path, "src/calc.py/inner.py")
    check_location(tmp_path, "src/calc.py/inner.py", replaced={"src/calc.py"})
    with pytest.raises(PathError, match=r"differs only in case from the existing src/calc\.py"):
        check_location(tmp_path, "src/Calc.py")
    with pytest.raises(PathError, match="differs only in case from the existing src"):
        check_location(tmp_path, "Src/new.py")
    with pytest.raises(PathError, match="link is a symlink"):
        check_location(tmp_path, "link/calc.py")
    check_location(tmp_path, "src/calc.py")
    check_location(tmp_path, "src/new/deeper.py")


def test_check_location_on_a_case_insensitive_file_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """There ``src/calc.py`` is found although the directory lists ``Calc.py``: still refused
    (simulated: ext4 here is case-sensitive)."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "calc.py").write_text("x\n")
    real = os.listdir
    monkeypatch.setattr(
        "keel.bundles.paths.os.listdir",
        lambda d: ["Calc.py" if n == "calc.py" else n for n in real(d)],
    )
    with pytest.raises(PathError, match=r"differs only in case from the existing src/Calc\.py"):
        check_location(tmp_path, "src/calc.py")
