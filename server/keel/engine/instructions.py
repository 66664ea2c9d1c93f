"""Project instructions: what the people on a repository tell every agent working on it.

Two files, when present: ``AGENTS.md`` at the workspace root (the convention several agents
share) and Keel's own (``[context] instructions``, by default ``.keel/instructions.md``). They
reach the prompt of every tier, named, within a quarter of the prompt bound; a file that is
too long is shortened and one that is binary, a secret or outside the workspace is left out,
each with a note in the prompt. ``keel map`` shows them with :func:`describe`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from keel.bundles.paths import PathError
from keel.engine.bounds import chars_for, render_files
from keel.engine.guard import ABSENT, PromptFile, read_for_prompt, secret_looking

AGENTS_FILE = "AGENTS.md"
DEFAULT_FILE = ".keel/instructions.md"
#: The share of the prompt bound the instructions may take together.
SHARE = 4


@dataclass(frozen=True)
class Instructions:
    """The instruction files found, as the prompts show them, and problems worth a warning."""

    files: tuple[PromptFile, ...] = ()
    warnings: tuple[str, ...] = ()

    def block(self) -> str:
        """The prompt's instructions section, or ``""`` when there are none."""
        if not self.files:
            return ""
        names = ", ".join(f.path for f in self.files)
        return (
            f"Project instructions ({names}): the repository's own rules; follow them.\n"
            + render_files(self.files)
        )


def instruction_path(raw: str) -> str:
    """The configured instructions file as a workspace-relative path, or PathError.

    Unlike a plan's paths it may lie under ``.keel/`` (the default does); it may not be
    absolute, climb out with ``..``, lie under ``.git/`` or look like a secret.
    """
    text = raw.strip()
    if not text or "\0" in text or "\\" in text:
        raise PathError(f"{raw!r}: not a workspace-relative path with '/' separators")
    pure = PurePosixPath(text)
    parts = [part for part in pure.parts if part != "."]
    if pure.is_absolute() or text.startswith("~") or ".." in parts or not parts:
        raise PathError(f"{raw}: must be a path inside the workspace, like {DEFAULT_FILE}")
    if ".git" in parts:
        raise PathError(f"{raw}: .git/ is never read for a prompt")
    path = "/".join(parts)
    if secret_looking(path):
        raise PathError(f"{raw}: looks like a secret (credentials, keys, .env); never shown")
    return path


def load_instructions(root: Path, configured: str | None, max_chars: int) -> Instructions:
    """The instruction files of the workspace at ``root``, within ``max_chars // SHARE``.

    Blocking: call it in ``asyncio.to_thread``. ``configured`` is ``[context] instructions``
    (``None``: the default file, if present).
    """
    files: list[PromptFile] = []
    warnings: list[str] = []
    left = max_chars // SHARE
    wanted = [(AGENTS_FILE, False), (configured or DEFAULT_FILE, configured is not None)]
    for raw, named in wanted:
        try:
            path = instruction_path(raw)
        except PathError as exc:
            warnings.append(f"[context] instructions: {exc}")
            continue
        if any(f.path == path for f in files):
            continue
        found = _read(root, path, max(left, 0))
        if found.note == ABSENT:
            if named:
                warnings.append(f"[context] instructions: {path} does not exist")
            continue
        if found.text is None:
            warnings.append(f"instructions {path} not shown: {found.note}")
        files.append(found)
        left -= len(found.text or "")
    return Instructions(tuple(files), tuple(warnings))


def _read(root: Path, path: str, limit: int) -> PromptFile:
    """``path`` under ``root`` through the guarded reader, allowing ``.keel/`` itself."""
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(real_root / path))
    if real_root not in real.parents:
        return PromptFile(path, None, "refused: resolves outside the workspace")
    inside = real.relative_to(real_root)
    if inside.parts[0] == ".git" or secret_looking(inside.as_posix()):
        return PromptFile(path, None, f"refused: leads to {inside.as_posix()}")
    if inside.parts[0] == ".keel":
        # The guarded reader refuses .keel/ for plans; read this one file from there.
        [file] = read_for_prompt(real_root / ".keel", ["/".join(inside.parts[1:])], limit)
        return PromptFile(path, file.text, _named(file.note), file.size)
    [file] = read_for_prompt(real_root, [inside.as_posix()], limit)
    return PromptFile(path, file.text, _named(file.note), file.size)


def _named(note: str) -> str:
    if note.startswith("shortened"):
        return f"{note}, the instructions' share of [context] max_prompt_tokens"
    return note


def show_instructions(root: Path, configured: str | None, max_prompt_tokens: int) -> list[str]:
    """What ``keel map`` prints under "Instructions": the files every prompt opens with.

    Blocking (it reads the files): call it in ``asyncio.to_thread``.
    """
    return list(describe(load_instructions(root, configured, chars_for(max_prompt_tokens))))


def describe(instructions: Instructions) -> Sequence[str]:
    """Lines for ``keel map``: each instructions file with its size and what a prompt shows."""
    lines = []
    for file in instructions.files:
        shown = "shown whole" if not file.note else file.note
        lines.append(f"{file.path} ({file.size} characters): {shown}")
    lines.extend(f"warning: {w}" for w in instructions.warnings)
    return lines or [f"(none: no {AGENTS_FILE} or {DEFAULT_FILE} in the workspace)"]
