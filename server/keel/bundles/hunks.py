"""Hunks: the changed regions of a bundle's files, each decided on its own (per-hunk review).

A hunk is one non-equal region of a line diff with zero lines of context between a file's
base (``before``) and the proposal (``after``): each non-``equal`` opcode of
``difflib.SequenceMatcher(None, before_lines, after_lines, autojunk=False)``. Hunks of one
file never overlap in the base, so any subset applies cleanly: take the chosen hunks' lines
from the proposal and the base's lines everywhere else. A created or deleted file, and a
file that is not UTF-8 text, is one hunk (the whole file).

Lines keep their endings while diffing and applying (a line is everything up to and
including ``\\n``), so CRLF files and a missing final newline keep their bytes; ``removed``
and ``added`` show the lines without their endings. A hunk's id is stable: the first 12 hex
digits of sha256 over ``path``, its removed and added lines and ``n``, the number of earlier
hunks of the file with the same removed and added lines. So a hunk keeps its id when other
hunks of its file are committed or dropped (docs/reference/lsp.md, "Hunks").
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

_LINE = re.compile(rb"[^\n]*\n|[^\n]+\Z")


@dataclass(frozen=True)
class Hunk:
    """One changed region of one file. Starts are 1-based; a count of 0 makes the start the
    line *after which* the change sits (0: before the first line)."""

    id: str
    path: str
    old_start: int
    old_lines: int
    new_start: int
    new_lines: int
    removed: tuple[str, ...]
    added: tuple[str, ...]
    whole: bool = False  # a created, deleted or binary file: the hunk is the whole file

    @property
    def header(self) -> str:
        return f"@@ -{self.old_start},{self.old_lines} +{self.new_start},{self.new_lines} @@"

    def describe(self) -> str:
        """The hunk as a reviewer sees it: its path and header, then ``-``/``+`` lines."""
        lines = [f"{self.path} {self.header}"]
        lines += [f"-{line}" for line in self.removed]
        lines += [f"+{line}" for line in self.added]
        return "\n".join(lines)


def split_lines(data: bytes) -> list[bytes]:
    """``data`` as lines, each with its ending (the last one may have none)."""
    return _LINE.findall(data)


def _text(line: bytes) -> str:
    if line.endswith(b"\n"):
        line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
    return line.decode("utf-8", "replace")


def is_text(data: bytes | None) -> bool:
    """Whether ``data`` is UTF-8 text (an absent file counts as text)."""
    if data is None:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _lines_key(path: str, removed: Iterable[str], added: Iterable[str]) -> str:
    """What a hunk's id hashes, less its count. Hunks count as identical when these agree
    (so ``removed=[""]`` and ``added=[""]`` are twins, never two hunks with one id)."""
    return path + "\0" + "\n".join(removed) + "\0" + "\n".join(added) + "\0"


def _hunk_id(key: str, n: int) -> str:
    return hashlib.sha256((key + str(n)).encode("utf-8", "surrogatepass")).hexdigest()[:12]


def _start(lo: int, count: int) -> int:
    """A unified diff's 1-based start: the line after which an empty range sits."""
    return lo + 1 if count else lo


@dataclass(frozen=True)
class _Region:
    hunk: Hunk
    old: tuple[int, int]  # slice of the base's lines
    new: tuple[int, int]  # slice of the proposal's lines


def _regions(path: str, before: bytes | None, after: bytes | None) -> list[_Region]:
    if before == after:
        return []
    old = split_lines(before or b"")
    new = split_lines(after or b"")
    whole = before is None or after is None or not (is_text(before) and is_text(after))
    if whole:
        spans = [((0, len(old)), (0, len(new)))]
    else:
        matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
        spans = [
            ((i1, i2), (j1, j2)) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"
        ]
    seen: dict[str, int] = {}
    out = []
    for (i1, i2), (j1, j2) in spans:
        removed = tuple(_text(line) for line in old[i1:i2])
        added = tuple(_text(line) for line in new[j1:j2])
        key = _lines_key(path, removed, added)
        n = seen.get(key, 0)
        seen[key] = n + 1
        hunk = Hunk(
            id=_hunk_id(key, n),
            path=path,
            old_start=_start(i1, i2 - i1),
            old_lines=i2 - i1,
            new_start=_start(j1, j2 - j1),
            new_lines=j2 - j1,
            removed=removed,
            added=added,
            whole=whole,
        )
        out.append(_Region(hunk, (i1, i2), (j1, j2)))
    return out


def file_hunks(path: str, before: bytes | None, after: bytes | None) -> list[Hunk]:
    """The hunks of one file, in order (none when ``before == after``)."""
    return [region.hunk for region in _regions(path, before, after)]


def apply_file(
    path: str, before: bytes | None, after: bytes | None, chosen: Collection[str]
) -> bytes | None:
    """``before`` with the hunks whose ids are in ``chosen`` applied (ids of other files are
    ignored): all of them give ``after``, none gives ``before``."""
    regions = _regions(path, before, after)
    if not regions:
        return before
    if regions[0].hunk.whole:
        return after if regions[0].hunk.id in chosen else before
    old = split_lines(before or b"")
    new = split_lines(after or b"")
    out: list[bytes] = []
    position = 0
    for region in regions:
        lo, hi = region.old
        out += old[position:lo]
        if region.hunk.id in chosen:
            out += new[region.new[0] : region.new[1]]
        else:
            out += old[lo:hi]
        position = hi
    out += old[position:]
    return b"".join(out)


def bundle_hunks(
    changes: Mapping[str, bytes | None], base: Mapping[str, bytes | None]
) -> list[Hunk]:
    """Every hunk of a change set, files in path order."""
    return [h for path in sorted(changes) for h in file_hunks(path, base.get(path), changes[path])]


@dataclass(frozen=True)
class HunkSplit:
    """A change set split by hunk ids.

    ``chosen``: the chosen hunks applied to the base, for every file with one (the
    sub-bundle). ``rest``/``rest_base``: the files with hunks not chosen, as the proposal
    against the base with the chosen hunks applied (what is left once ``chosen`` is in).
    """

    chosen: dict[str, bytes | None]
    chosen_base: dict[str, bytes | None]
    rest: dict[str, bytes | None]
    rest_base: dict[str, bytes | None]
    hunks: tuple[Hunk, ...]  # the chosen hunks


def split(
    changes: Mapping[str, bytes | None], base: Mapping[str, bytes | None], ids: Collection[str]
) -> HunkSplit:
    """Split a change set into the chosen hunks and the rest (see :class:`HunkSplit`)."""
    chosen: dict[str, bytes | None] = {}
    chosen_base: dict[str, bytes | None] = {}
    rest: dict[str, bytes | None] = {}
    rest_base: dict[str, bytes | None] = {}
    picked: list[Hunk] = []
    for path in sorted(changes):
        before, after = base.get(path), changes[path]
        hunks = file_hunks(path, before, after)
        mine = [h for h in hunks if h.id in ids]
        picked += mine
        middle = apply_file(path, before, after, {h.id for h in mine}) if mine else before
        if mine:
            chosen[path], chosen_base[path] = middle, before
        if len(mine) < len(hunks):
            rest[path], rest_base[path] = after, middle
    return HunkSplit(chosen, chosen_base, rest, rest_base, tuple(picked))


def unknown_ids(hunks: Iterable[Hunk], ids: Iterable[str]) -> list[str]:
    """The ids that name no hunk of ``hunks``, in the order given."""
    known = {h.id for h in hunks}
    return [i for i in ids if i not in known]
