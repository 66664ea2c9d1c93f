"""Applying an artifact bundle to a sandbox tree, all or nothing.

Application runs in two phases (aider's dry run, then write): :func:`plan_changes` computes
every file's new bytes in memory and collects *every* problem (bad path, write outside the
node's ownership, patch that does not apply) so the model hears about all of them at once;
only a bundle with no problem is written, by :func:`write_changes`, each file atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from keel.bundles.atomic import write_atomically
from keel.bundles.model import ArtifactBundle
from keel.bundles.patch import PatchError, apply_patch
from keel.bundles.paths import (
    PathError,
    check_location,
    normalize,
    resolve_inside,
)


@dataclass(frozen=True)
class Problem:
    """One reason the bundle cannot be applied; ``kind`` is ``path``, ``ownership`` or ``patch``."""

    kind: str
    path: str
    message: str


@dataclass
class ChangeSet:
    """The planned effect of a bundle: new bytes per path (``None`` deletes) and the old bytes."""

    changes: dict[str, bytes | None] = field(default_factory=dict)
    base: dict[str, bytes | None] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def created(self) -> set[str]:
        """The paths this change set creates (absent from its base)."""
        return {
            path
            for path, data in self.changes.items()
            if data is not None and self.base.get(path) is None
        }

    def changed(self) -> ChangeSet:
        """Only the paths whose content changes: a file written as it already stands (a
        bundle proposed again once part of it is committed) is no change."""
        kept = [path for path, data in self.changes.items() if data != self.base.get(path)]
        return ChangeSet(
            changes={path: self.changes[path] for path in kept},
            base={path: self.base.get(path) for path in kept},
            problems=list(self.problems),
        )

    def content_hash(self) -> str:
        """The bundle id's basis: a hash of the sorted (path, new content) pairs."""
        digest = hashlib.sha256()
        for path in sorted(self.changes):
            data = self.changes[path]
            digest.update(path.encode() + b"\0")
            digest.update(b"-" if data is None else b"+" + hashlib.sha256(data).digest())
        return digest.hexdigest()


def _read(location: Path) -> bytes | None:
    try:
        return location.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError as exc:
        raise PathError(f"{location.name}: is a directory, not a file") from exc
    except NotADirectoryError as exc:
        raise PathError(f"{location.name}: a parent of it is a file, not a directory") from exc
    except OSError as exc:
        raise PathError(f"{location.name}: cannot be read: {exc.strerror or exc}") from exc


def _owned(path: str, owns: Iterable[str]) -> bool:
    for owned in owns:
        owned = owned.rstrip("/")
        if path == owned or path.startswith(owned + "/"):
            return True
    return False


def plan_changes(root: Path, bundle: ArtifactBundle, owns: Iterable[str]) -> ChangeSet:
    """Work out what ``bundle`` would do to the tree at ``root``, without writing anything."""
    result = ChangeSet()
    owned = [normalize(path) for path in owns]
    # A path both written in full and deleted is replaced: the write stands (small models
    # list the file they rewrite in deletes too).
    written = set()
    for write in bundle.writes:
        with contextlib.suppress(PathError):
            written.add(normalize(write.path))
    operations: list[tuple[str, str, str | None]] = [
        *(("write", w.path, w.content) for w in bundle.writes),
        *(("diff", d.path, d.patch) for d in bundle.diffs),
        *(("delete", p, None) for p in bundle.deletes if not normalizes_into(p, written)),
    ]
    deleted = set()
    for raw in bundle.deletes:
        with contextlib.suppress(PathError):
            deleted.add(normalize(raw))
    deleted -= written
    for kind, raw_path, payload in operations:
        try:
            path = normalize(raw_path)
            location = resolve_inside(root, path)
            check_location(root, path, replaced=deleted - {path})
        except PathError as exc:
            result.problems.append(Problem("path", raw_path, str(exc)))
            continue
        if not _owned(path, owned):
            result.problems.append(
                Problem("ownership", path, f"{path} is not owned by this node (owns: {owned})")
            )
            continue
        if path in result.changes:
            if kind == "write" and payload is not None and payload.encode() == result.changes[path]:
                continue  # the same full write twice: one write, nothing ambiguous
            result.problems.append(Problem("path", path, f"{path} is changed twice in one bundle"))
            continue
        try:
            before = _read(location)
        except PathError as exc:
            result.problems.append(Problem("path", path, str(exc)))
            continue
        result.base[path] = before
        try:
            result.changes[path] = _new_content(kind, path, before, payload)
        except (PatchError, UnicodeDecodeError) as exc:
            result.problems.append(Problem("patch", path, str(exc)))
    result.problems.extend(_collisions(result.changes))
    return result


def compose(first: ChangeSet, then: ChangeSet) -> ChangeSet:
    """``then`` (planned on a tree where ``first`` was written) as one change set against
    ``first``'s base: each path's last content, and its base from before either. A path that
    ends as it began is no change and leaves the set."""
    changes = {**first.changes, **then.changes}
    base = {path: first.base[path] if path in first.base else then.base[path] for path in changes}
    return ChangeSet(changes, base, [*first.problems, *then.problems]).changed()


def normalizes_into(raw: str, paths: Container[str]) -> bool:
    """Whether a bundle's raw path, normalized, is one of ``paths`` (a bad path is not)."""
    try:
        return normalize(raw) in paths
    except PathError:
        return False


def _collisions(changes: Mapping[str, bytes | None]) -> list[Problem]:
    """Paths of one bundle that cannot all exist: ``a.py`` written with ``a.py/b.py``, or two
    spellings of one name that differ only in case (``A.py`` and ``a.py``, ``Src/`` and
    ``src/``), which a case-insensitive file system would make one."""
    problems = []
    changed = sorted(changes)
    written = {path for path, data in changes.items() if data is not None}
    spellings: dict[str, str] = {}
    for path in changed:
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if depth < len(parts) and prefix in written:
                problems.append(
                    Problem("path", path, f"{path}: {prefix} is a file in this same bundle")
                )
            seen = spellings.setdefault(prefix.casefold(), prefix)
            if seen != prefix:
                message = f"{path}: {prefix} and {seen} differ only in case"
                problems.append(Problem("path", path, message))
                break
    return problems


def _new_content(kind: str, path: str, before: bytes | None, payload: str | None) -> bytes | None:
    if kind == "write":
        assert payload is not None
        return payload.encode()
    if kind == "delete":
        if before is None:
            raise PatchError(
                f"cannot delete {path}: it does not exist (to create it, put it in writes "
                "with its full content)"
            )
        return None
    assert payload is not None
    text = None if before is None else before.decode()
    after = apply_patch(path, text, payload)
    return None if after is None else after.encode()


#: The mode of a file a bundle creates in a sandbox (an existing file keeps its own).
NEW_FILE_MODE = 0o644


def write_changes(root: Path, changes: Mapping[str, bytes | None], *, durable: bool = True) -> None:
    """Write a problem-free change set into ``root``, deletions first (a deleted file may
    become a directory). Each file is replaced atomically; ``durable=False`` (a sandbox,
    thrown away and rebuilt after a crash) skips the syncs to the disk."""
    for path in sorted(changes, key=lambda p: changes[p] is not None):
        data = changes[path]
        location = resolve_inside(root, path)
        if data is None:
            location.unlink(missing_ok=True)
        else:
            write_atomically(location, data, new_mode=NEW_FILE_MODE, durable=durable)
