"""Workspace-relative paths a model may name, and the ones it may not.

Every path in a bundle passes :func:`normalize` (syntax: no absolute paths, no ``..``, nothing
under ``.git/`` or ``.keel/``) and :func:`resolve_inside` (the real location, symlinks
followed, stays inside the tree). The ledger repeats the check before it writes: defence in
depth, because a path that escapes the workspace must never be written.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

RESERVED_DIRS = (".git", ".keel")


class PathError(ValueError):
    """A path a bundle may not touch; the message is fed back to the model."""


def normalize(path: str) -> str:
    """Return the canonical ``a/b/c`` form of a workspace-relative path, or raise PathError."""
    if not path or not path.strip():
        raise PathError("empty path")
    if "\0" in path:
        raise PathError(f"{path!r}: NUL byte in path")
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
    return "/".join(parts)


def resolve_inside(root: Path, relative: str) -> Path:
    """The absolute location of ``relative`` under ``root``, refusing symlink escapes.

    The check follows symlinks in every existing component, so ``link/x`` where ``link``
    points outside the tree is refused even though its text looks harmless.
    """
    real_root = Path(os.path.realpath(root))
    target = Path(os.path.realpath(real_root / relative))
    if target != real_root and real_root not in target.parents:
        raise PathError(f"{relative}: resolves outside the workspace (through a symlink)")
    inside = target.relative_to(real_root).parts
    if inside and inside[0] in RESERVED_DIRS:
        raise PathError(f"{relative}: resolves into {inside[0]}/, which is reserved")
    return target
