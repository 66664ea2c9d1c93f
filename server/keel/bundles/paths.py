"""Workspace-relative paths a model may name, and the ones it may not.

Every path in a bundle passes :func:`normalize` (syntax: no absolute paths, no ``..``, nothing
under ``.git/`` or ``.keel/``, no control characters, no name over ``NAME_MAX`` bytes),
:func:`resolve_inside` (the real location, symlinks followed, stays inside the tree and under
``PATH_MAX``) and :func:`check_location` (what is on disk: no symlink on the way, no existing
file used as a directory, no name differing only in case from an existing one). The ledger
repeats the checks before it writes: defence in depth, because a path that escapes the
workspace must never be written, and what is verified must be what is committed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection
from pathlib import Path, PurePosixPath

RESERVED_DIRS = (".git", ".keel")
NAME_MAX = 255  # bytes in one component (ext4, xfs, btrfs, APFS)
PATH_MAX = 4096  # bytes in an absolute path, terminating NUL included (Linux)


class PathError(ValueError):
    """A path a bundle may not touch; the message is fed back to the model."""


def normalize(path: str) -> str:
    """Return the canonical ``a/b/c`` form of a workspace-relative path, or raise PathError."""
    if not path or not path.strip():
        raise PathError("empty path")
    if "\0" in path:
        raise PathError(f"{path!r}: NUL byte in path")
    control = first_control(path)
    if control is not None:
        raise PathError(f"{escape(path)}: control character {control} in path")
    if "\\" in path:
        raise PathError(f"{path}: use '/' separators, not '\\'")
    pure = PurePosixPath(path)
    if pure.is_absolute():
        raise PathError(f"{path}: absolute paths are not allowed; use a workspace-relative path")
    parts = [part for part in pure.parts if part != "."]
    if ".." in parts:
        raise PathError(f"{path}: '..' is not allowed; paths stay inside the workspace")
    if not parts:
        raise PathError(f"{path!r}: names no file")
    if parts[0] in RESERVED_DIRS:
        raise PathError(f"{path}: {parts[0]}/ is reserved and never written by a bundle")
    if ".git" in parts:
        raise PathError(f"{path}: .git/ directories (nested repositories) are never written")
    for part in parts:
        size = len(part.encode("utf-8", "surrogateescape"))
        if size > NAME_MAX:
            raise PathError(
                f"{path[:60]}...: the name {part[:40]}... is {size} bytes, over the "
                f"{NAME_MAX}-byte limit of a file name"
            )
    return "/".join(parts)


def first_control(text: str) -> str | None:
    """The first control character of ``text`` (C0, DEL or C1) as a visible escape, or None."""
    for char in text:
        if _is_control(char):
            return escape(char)
    return None


def escape(text: str, keep: str = "") -> str:
    """``text`` with every control character but those in ``keep`` as a visible escape, so a
    name, title or diff printed to a terminal can never move the cursor or clear the screen.

    Names and titles keep nothing (a newline would forge a line of output); a diff or a
    command's output keeps ``"\\n\\t"``.
    """
    if not any(_is_control(char) and char not in keep for char in text):
        return text
    return "".join(
        _escape_char(char) if _is_control(char) and char not in keep else char for char in text
    )


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code < 0xA0


def _escape_char(char: str) -> str:
    named = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
    return named.get(char) or f"\\x{ord(char):02x}"


def resolve_inside(root: Path, relative: str) -> Path:
    """The absolute location of ``relative`` under ``root``, refusing symlink escapes.

    The check follows symlinks in every existing component, so ``link/x`` where ``link``
    points outside the tree is refused even though its text looks harmless.
    """
    real_root = Path(os.path.realpath(root))
    size = len(os.fsencode(real_root / relative))
    if size >= PATH_MAX:
        raise PathError(
            f"{relative[:60]}...: the full path is {size} bytes, over the {PATH_MAX}-byte limit"
        )
    target = Path(os.path.realpath(real_root / relative))
    if target != real_root and real_root not in target.parents:
        raise PathError(f"{relative}: resolves outside the workspace (through a symlink)")
    inside = target.relative_to(real_root).parts
    if inside and inside[0] in RESERVED_DIRS:
        raise PathError(f"{relative}: resolves into {inside[0]}/, which is reserved")
    return target


def check_location(root: Path, relative: str, replaced: Collection[str] = ()) -> None:
    """Refuse a normalised ``relative`` that the tree at ``root`` cannot hold as named.

    Walking its components on disk, refused are: a symlink (a write or delete through it
    would change another file than the one named, so what is verified would not be what is
    committed), an existing file used as a directory (``a.py/b.py``), and a new name that
    differs only in case from an existing entry (``A.py`` beside ``a.py``: one file on a
    case-insensitive file system, two in git). A file in ``replaced`` (deleted by the same
    bundle) may become a directory.
    """
    current = root
    parts = relative.split("/")
    for depth, part in enumerate(parts):
        so_far = "/".join(parts[: depth + 1])
        location = current / part
        try:
            info = location.lstat()
        except FileNotFoundError:
            _check_case(current, part, so_far, relative)
            return  # nothing below a missing component exists
        except NotADirectoryError:
            return  # reported at the previous component
        # On a case-insensitive file system ``A.py`` finds ``a.py``: the name must be listed.
        _check_case(current, part, so_far, relative)
        if stat.S_ISLNK(info.st_mode):
            raise PathError(
                f"{relative}: {so_far} is a symlink; name the file it points to instead"
            )
        last = depth == len(parts) - 1
        if not last and not stat.S_ISDIR(info.st_mode) and so_far not in replaced:
            raise PathError(f"{relative}: {so_far} is an existing file, not a directory")
        if so_far in replaced:
            return  # deleted first: nothing below it exists
        current = location


def _check_case(directory: Path, name: str, so_far: str, relative: str) -> None:
    try:
        entries = os.listdir(directory)
    except OSError:
        return
    folded = name.casefold()
    for entry in entries:
        if entry != name and entry.casefold() == folded:
            existing = f"{so_far.rpartition('/')[0]}/{entry}".lstrip("/")
            raise PathError(
                f"{relative}: {so_far} differs only in case from the existing {existing}"
            )
