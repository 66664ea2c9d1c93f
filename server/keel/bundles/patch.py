"""Applying a model's unified diff to one file's text, strictly.

The patch is parsed with unidiff. Each hunk's old lines (context and removals) must match
the file exactly, at the stated line or, failing that, at exactly one other place: models
often get line numbers wrong but context right. Failing an exact match, the lines may match
at exactly one place with their leading and trailing whitespace ignored (a small model's diff
drops a context line's indentation); the file's own context lines are kept then, and only the
hunk's removals and additions change it. For the same reason the line counts in each
``@@`` header are recounted from the hunk's body first, and a body line with no diff marker
(an empty context line whose space was lost) is read as context: the exact match decides
whether the hunk applies, not the model's arithmetic. Anything else is a :class:`PatchError`
whose message tells the model which hunk failed and why, so the next attempt can fix it.
"""

from __future__ import annotations

import re

from unidiff.errors import UnidiffParseError
from unidiff.patch import PatchSet

#: A hunk header; its line counts are recounted from the body (:func:`recounted`).
HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@(.*)$")
BODY_MARKERS = (" ", "-", "+", "\\")


class PatchError(ValueError):
    """A patch that does not parse or does not apply."""


def _strip_prefix(name: str) -> str:
    if name.startswith(("a/", "b/")):
        return name[2:]
    return name


def _split(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _find(lines: list[str], block: list[str], hint: int) -> int:
    """Where ``block`` starts in ``lines``: at ``hint`` if it matches there, else its one
    match, else its one match with each line's surrounding whitespace ignored."""
    size = len(block)
    if lines[hint : hint + size] == block:
        return hint
    matches = [i for i in range(len(lines) - size + 1) if lines[i : i + size] == block]
    if len(matches) > 1:
        raise PatchError(f"its context matches {len(matches)} places; include more context lines")
    if matches:
        return matches[0]
    stripped, wanted = [_loose(line) for line in lines], [_loose(line) for line in block]
    loose = [i for i in range(len(lines) - size + 1) if stripped[i : i + size] == wanted]
    if len(loose) == 1:
        return loose[0]
    if not loose:
        raise PatchError("its context and removed lines do not match the file")
    raise PatchError(
        f"its context matches {len(loose)} places (ignoring indentation); include more "
        "context lines, indented as in the file"
    )


def _loose(line: str) -> tuple[str, str]:
    """A line with its surrounding whitespace ignored but its line ending kept (a last line
    without one, or a CRLF line, is still told apart)."""
    ending = "\r\n" if line.endswith("\r\n") else "\n" if line.endswith("\n") else ""
    return line[: len(line) - len(ending)].strip(), ending


def _with_file_context(kinds: list[str], found: list[str], new: list[str]) -> list[str]:
    """The hunk's new lines, with each context line as the file has it (``found``, what the
    old lines matched) rather than as the hunk wrote it."""
    result: list[str] = []
    old_at = new_at = 0
    for kind in kinds:
        if kind == " ":
            result.append(found[old_at])
            old_at += 1
            new_at += 1
        elif kind == "-":
            old_at += 1
        elif kind == "+":
            result.append(new[new_at])
            new_at += 1
    return result


def recounted(patch: str) -> str:
    """``patch`` with each hunk's header counting the lines its body has."""
    lines = patch.splitlines()
    out: list[str] = []
    index = 0
    while index < len(lines):
        header = HUNK_HEADER.match(lines[index])
        if header is None:
            out.append(lines[index])
            index += 1
            continue
        body: list[str] = []
        index += 1
        while index < len(lines) and not _ends_hunk(lines, index):
            line = lines[index]
            body.append(line if line.startswith(BODY_MARKERS) else " " + line)
            index += 1
        while body and body[-1] == " " and index >= len(lines):
            body.pop()  # the patch's own trailing blank lines, not context
        old = sum(1 for line in body if line[0] in " -")
        new = sum(1 for line in body if line[0] in " +")
        source, target, rest = header.groups()
        out.append(f"@@ -{source},{old} +{target},{new} @@{rest}")
        out.extend(body)
    return "\n".join(out) + "\n"


def _ends_hunk(lines: list[str], index: int) -> bool:
    """A new hunk, or a new file's ``---``/``+++`` header pair."""
    line = lines[index]
    if HUNK_HEADER.match(line):
        return True
    following = lines[index + 1] if index + 1 < len(lines) else ""
    return line.startswith("--- ") and following.startswith("+++ ")


def apply_patch(path: str, original: str | None, patch: str) -> str | None:
    """Apply ``patch`` to ``original`` (``None``: the file does not exist).

    Returns the new text, or ``None`` when the patch deletes the file.
    """
    try:
        patch_set = PatchSet(recounted(patch))
    except UnidiffParseError as exc:
        raise PatchError(f"patch for {path} does not parse as a unified diff: {exc}") from exc
    if len(patch_set) != 1:
        raise PatchError(f"patch for {path} must change exactly one file, not {len(patch_set)}")
    patched = patch_set[0]
    target = _strip_prefix(patched.target_file)
    if not patched.is_removed_file and target != path:
        raise PatchError(f"patch for {path} names {target} in its +++ header")
    source = _strip_prefix(patched.source_file)
    if patched.is_removed_file and source != path:
        raise PatchError(f"patch for {path} deletes {source} (its --- header)")
    if patched.is_added_file:
        if original is not None:
            raise PatchError(f"patch for {path} creates the file, but it already exists")
        original = ""
    if original is None:
        raise PatchError(f"patch for {path}: the file does not exist; use a write instead")
    lines = _split(original)
    offset = 0
    for number, hunk in enumerate(patched, start=1):
        if not any(line.is_added or line.is_removed for line in hunk):
            raise PatchError(
                f"hunk {number} of the patch for {path} changes no line (only context): "
                "mark removed lines with - and added lines with +"
            )
        old = [line.value for line in hunk if line.is_context or line.is_removed]
        new = [line.value for line in hunk if line.is_context or line.is_added]
        _restore_missing_newlines(hunk, old, new)
        hint = max(hunk.source_start - 1 + offset, 0)
        try:
            start = _find(lines, old, hint) if old else min(hint, len(lines))
        except PatchError as exc:
            raise PatchError(
                f"hunk {number} of the patch for {path} does not apply: {exc}"
            ) from exc
        found = lines[start : start + len(old)]
        if found != old:  # matched with whitespace ignored: keep the file's context lines
            new = _with_file_context([line.line_type for line in hunk], found, new)
        lines[start : start + len(old)] = new
        offset += len(new) - len(old)
    # A deletion's hunks were checked above against the file: it deletes what it has seen.
    return None if patched.is_removed_file else "".join(lines)


def _restore_missing_newlines(hunk: object, old: list[str], new: list[str]) -> None:
    """unidiff keeps "\\ No newline at end of file" as a marker line; honour it.

    Lines are compared with their newline, so a last line without one must lose it here.
    """
    values = [(line.line_type, line.value) for line in hunk]  # type: ignore[attr-defined]
    for index, (kind, _value) in enumerate(values):
        if kind != "\\" or index == 0:
            continue
        before_kind = values[index - 1][0]
        targets = []
        if before_kind in (" ", "-"):
            targets.append(old)
        if before_kind in (" ", "+"):
            targets.append(new)
        for block in targets:
            if block and block[-1].endswith("\n"):
                block[-1] = block[-1][:-1]
