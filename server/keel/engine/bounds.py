"""Prompt bounds: every prompt fits ``[context] max_prompt_tokens``, and every cut is stated.

Tokens are counted as characters / 4, the usual estimate for English and code. Files are
fitted in priority order (a node's own files before the files it reads, those before the
outlines of definitions it uses): a file that fits is shown whole, one that does not is
shortened while there is useful room, and left out after that, with a note naming it and why.
:func:`cut_middle` is the last resort for text that is not files (a huge task or evidence):
it keeps the start and the end and says how much it removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from keel.engine.guard import PromptFile

CHARS_PER_TOKEN = 4
#: Below this many characters of room a file is left out rather than shortened.
MIN_SHOWN = 400


#: How much of a file a prompt shows when prompts are not bounded.
UNBOUNDED_FILE_CHARS = 64_000


def chars_for(tokens: int) -> int:
    return tokens * CHARS_PER_TOKEN


def bound_reason(max_tokens: int) -> str:
    return f"to fit [context] max_prompt_tokens = {max_tokens}"


def render_file(file: PromptFile) -> str:
    """``--- path ---`` and the text, or the note saying why there is none."""
    head = f"--- {file.path} ---\n"
    if file.text is None:
        return head + f"({file.note})"
    return head + file.text + (f"\n[... {file.note} ...]" if file.note else "")


def render_files(files: Sequence[PromptFile]) -> str:
    return "\n".join(render_file(f) for f in files) if files else "(none)"


def fit_files(
    groups: Sequence[Sequence[PromptFile]], room: int, reason: str
) -> tuple[list[list[PromptFile]], list[str]]:
    """Fit ``groups`` (highest priority first) into ``room`` characters.

    Returns the groups as they will be shown and one sentence per file that was shortened or
    left out by the bound.
    """
    left = room
    fitted: list[list[PromptFile]] = []
    cuts: list[str] = []
    for group in groups:
        shown: list[PromptFile] = []
        for file in group:
            need = len(render_file(file)) + 1
            if need <= left or file.text is None:  # a note alone is one short line
                shown.append(file)
                left -= need
                continue
            overhead = need - len(file.text)
            keep = left - overhead - len(reason) - 80
            size = file.size or len(file.text)
            if keep >= MIN_SHOWN:
                note = f"shortened to its first {keep} of {size} characters {reason}"
                cut = replace(file, text=file.text[:keep], note=note)
                cuts.append(f"{file.path} shortened to its first {keep} of {size} characters")
            else:
                cut = replace(file, text=None, note=f"left out ({size} characters) {reason}")
                cuts.append(f"{file.path} left out ({size} characters)")
            shown.append(cut)
            left -= len(render_file(cut)) + 1
        fitted.append(shown)
    return fitted, cuts


def cut_middle(text: str, max_chars: int, reason: str) -> str:
    """``text`` within ``max_chars``: its start and end with a stated cut between them."""
    if len(text) <= max_chars:
        return text
    room = max(0, max_chars - len(reason) - 60)
    head = room * 2 // 3
    tail = room - head
    removed = len(text) - head - tail
    marker = f"\n[... Keel cut {removed} characters here {reason} ...]\n"
    return text[:head] + marker + (text[len(text) - tail :] if tail else "")
