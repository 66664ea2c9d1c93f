"""Approval on a terminal: the reviewer's side of ``keel agent`` without ``-y``.

Why a module of its own: the prompt loop, the editor round trip and their tests are more than
argument parsing, and the CLI should stay a thin shell. The keys are the ones the language
server offers as commands (docs/reference/lsp.md), so a reviewer meets the same choices in the
editor and on the terminal:

``y`` approve · ``n`` reject (with an optional reason the model hears) · ``c`` correct (the
correction text is required and reaches the model's next attempt) · ``e`` edit the proposed
files in ``$VISUAL``/``$EDITOR`` (default ``vi``); the edited bundle is verified again and
proposed again, without a model call · ``d`` show the diff · ``h`` review hunk by hunk.

Hunk review walks the bundle's hunks (``keel.bundles.hunks``, the ids the editor and the API
use) in the manner of ``git add -p``: ``y`` keeps a hunk, ``n`` rejects it, ``q`` stops (the
rest undecided). The engine takes one kind of hunk decision at a time, so a walk that keeps
some hunks and rejects others is sent as two: first the approval of the kept hunks (verified
again alone, then committed); once that commit is in, the engine proposes what is left again
and the rejection of the rejected hunks, with the one reason asked at the end of the walk,
answers that proposal without asking (their ids are stable across the commit). If the kept
hunks cannot be committed, nothing of the walk is sent and the bundle is asked about again.

Prompts go to stderr and answers come from stdin, so ``--json`` keeps stdout for events.
Prompts of concurrent nodes are asked one at a time. End of input means nobody can answer:
the node waits (``awaiting_approval``) for a later ``keel resume``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TextIO

from keel.bundles.hunks import Hunk, bundle_hunks, is_text
from keel.bundles.paths import escape
from keel.engine.ports import ApprovalRequest, Decision, Settlement

MENU = "[y]es / [n]o / [c]orrect / [e]dit / [d]iff / [h]unks"
HELP = (
    "  y  approve and commit\n"
    "  n  reject; an optional reason is sent to the model\n"
    "  c  correct: your instructions are sent to the model, which proposes again\n"
    "  e  edit the proposed files in $VISUAL/$EDITOR; the edit is verified and proposed again\n"
    "  d  show the diff\n"
    "  h  review hunk by hunk: keep or reject each; the kept hunks are committed, the\n"
    "     rejected ones reach the model with one reason\n"
)
HUNK_MENU = "[y,n,q,?]"
REASON = "Reason for the rejected hunks (sent to the model, optional): "
HUNK_HELP = (
    "  y  keep this hunk: it is committed\n"
    "  n  reject this hunk: its lines reach the model with your reason\n"
    "  q  stop here: the hunks not decided yet stay in the bundle, asked about again\n"
    "  ?  show this help\n"
)

#: Runs an editor command on some files; returns its exit status.
EditorRunner = Callable[[list[str]], int]


def editor_command(env: Mapping[str, str]) -> list[str]:
    """``$VISUAL``, else ``$EDITOR``, else ``vi``; split like a shell would (``code -w``)."""
    command = env.get("VISUAL") or env.get("EDITOR") or "vi"
    return shlex.split(command) or ["vi"]


@contextlib.contextmanager
def _controlling_terminal() -> Iterator[IO[bytes] | None]:
    """The terminal itself, so an editor draws there even when stdout is redirected."""
    try:
        tty = open("/dev/tty", "r+b", buffering=0)
    except OSError:
        yield None
        return
    try:
        yield tty
    finally:
        tty.close()


def run_editor(argv: list[str]) -> int:
    """Run the editor attached to the terminal and wait for it."""
    with _controlling_terminal() as tty:
        try:
            return subprocess.run(argv, stdin=tty, stdout=tty, stderr=tty, check=False).returncode
        except OSError as exc:
            sys.stderr.write(f"cannot run the editor {argv[0]}: {exc.strerror or exc}\n")
            return 127


def edit_files(
    changes: Mapping[str, bytes | None], editor: list[str], runner: EditorRunner = run_editor
) -> dict[str, bytes | None] | None:
    """Let the reviewer edit the proposed files; the ones they changed, or ``None`` on failure.

    The files are copied into a private temporary directory under their workspace-relative
    paths (deleted files are not offered). A file the reviewer removes there is a deletion.
    """
    with tempfile.TemporaryDirectory(prefix="keel-edit-") as tmp:
        root = Path(tmp).resolve()
        copies: dict[str, Path] = {}
        for rel, content in sorted(changes.items()):
            target = (root / rel).resolve()
            if content is None or not target.is_relative_to(root):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            copies[rel] = target
        if not copies:
            return {}
        if runner([*editor, *(str(path) for path in copies.values())]) != 0:
            return None
        edited = {rel: path.read_bytes() if path.exists() else None for rel, path in copies.items()}
    return {rel: data for rel, data in edited.items() if data != changes[rel]}


def describe_hunk(hunk: Hunk, number: int, total: int, request: ApprovalRequest) -> str:
    """One hunk as hunk review shows it: ``[n/total] path header  hunk ID``, then its
    ``-``/``+`` lines (a binary file as its sizes), escaped like all model text here."""
    before, after = request.base.get(hunk.path), request.changes.get(hunk.path)
    kind = ""
    if hunk.whole:
        kind = " (new file)" if before is None else " (deleted)" if after is None else ""
    head = f"[{number}/{total}] {escape(hunk.path)}{kind} {hunk.header}  hunk {hunk.id}"
    lines = ["", head]
    if hunk.whole and not (is_text(before) and is_text(after)):
        lines.append(f"  binary: {_size(before)} -> {_size(after)}")
    else:
        lines += [escape(f"-{line}", keep="\t") for line in hunk.removed]
        lines += [escape(f"+{line}", keep="\t") for line in hunk.added]
    return "\n".join(lines) + "\n"


def _size(data: bytes | None) -> str:
    return "absent" if data is None else f"{len(data)} bytes"


def describe_request(request: ApprovalRequest) -> str:
    """The header of an approval prompt: node, energy, complexity, files."""
    energy = request.energy
    parts = " ".join(
        f"{name}={energy.get('v_' + name, 0.0):.2f}"
        for name in ("syn", "str", "log", "boot", "sheaf")
    )
    files = ", ".join(escape(path) for path in sorted(request.changes)) or "(no files)"
    return (
        f"\n{escape(request.node_id)}: {escape(request.title)}\n"
        f"  V(x)={energy.get('v', 0.0):.3f} [{parts}]  complexity {request.complexity}\n"
        f"  files: {files}\n"
    )


class _EndOfInput(Exception):
    """Nobody can answer any more (end of input in the middle of a question)."""


@dataclass(frozen=True)
class _Rejection:
    """Hunks rejected in a walk that also kept hunks: sent once the kept ones are committed."""

    bundle_id: str  # the bundle whose kept hunks were approved
    hunks: tuple[str, ...]
    rest: frozenset[str]  # every hunk of that bundle but the kept ones: what comes back
    reason: str
    committed: bool = False


class TerminalApprover:
    """Asks on the terminal when there is one; otherwise nobody can approve (returns None)."""

    def __init__(
        self,
        interactive: bool,
        *,
        stdin: TextIO | None = None,
        stderr: TextIO | None = None,
        env: Mapping[str, str] | None = None,
        editor_runner: EditorRunner = run_editor,
    ) -> None:
        self._interactive = interactive
        self._stdin = stdin or sys.stdin
        self._stderr = stderr or sys.stderr
        self._env = os.environ if env is None else env
        self._editor_runner = editor_runner
        self._turn = asyncio.Lock()
        # Per node: the hunks a walk rejected, waiting for its kept hunks' commit.
        self._rejections: dict[str, _Rejection] = {}

    def _say(self, text: str) -> None:
        self._stderr.write(text)
        self._stderr.flush()

    async def _ask(self, question: str) -> str | None:
        """One line of input (stripped), or ``None`` at end of input."""

        def read() -> str | None:
            self._say(question)
            line = self._stdin.readline()
            return line.strip() if line else None

        return await asyncio.to_thread(read)

    async def review(self, request: ApprovalRequest) -> Decision | None:
        if not self._interactive:
            return None
        async with self._turn:
            self._say(describe_request(request))
            rejection = self._rejection(request)
            if rejection is not None:
                return rejection
            try:
                return await self._review_loop(request)
            except _EndOfInput:
                return None

    def _rejection(self, request: ApprovalRequest) -> Decision | None:
        """The rejection a walk decided, once its kept hunks are committed and the rest is
        proposed again; ``None`` to ask (nothing pending, or its hunks are gone)."""
        pending = self._rejections.pop(request.node_id, None)
        if pending is None or not pending.committed:
            return None
        present = {hunk.id for hunk in bundle_hunks(request.changes, request.base)}
        if present != pending.rest:  # not the rest (a new model attempt): decide afresh
            self._say("This is not the rest of the bundle you reviewed; decide again.\n")
            return None
        said = f": {escape(pending.reason)}" if pending.reason else ""
        self._say(f"Rejecting hunks {', '.join(pending.hunks)} as you decided{said}\n")
        return Decision(
            approved=False, actor="user", feedback=pending.reason, hunks=list(pending.hunks)
        )

    async def _review_loop(self, request: ApprovalRequest) -> Decision | None:
        while True:
            answer = await self._ask(f"Approve {escape(request.node_id)}? {MENU}: ")
            if answer is None:
                return None
            decision = await self._answer(request, answer.lower())
            if decision is not None:
                return decision

    async def _answer(self, request: ApprovalRequest, key: str) -> Decision | None:
        """The decision a key makes, or ``None`` to ask again."""
        if key in ("y", "yes"):
            return Decision(approved=True, actor="user")
        if key in ("n", "no"):
            reason = await self._ask("Reason (sent to the model, optional): ")
            if reason is None:  # end of input at the question: nobody decided
                raise _EndOfInput
            return Decision(approved=False, actor="user", feedback=reason)
        if key in ("c", "correct"):
            text = await self._ask("Correction for the model: ")
            if text is None:
                raise _EndOfInput
            if text:
                return Decision(approved=False, actor="user", feedback=text, correction=True)
            self._say("No correction given.\n")
        elif key in ("e", "edit"):
            return await self._edit(request)
        elif key in ("d", "diff"):
            diff = escape(request.diff, keep="\n\t")
            self._say(diff if diff.endswith("\n") else diff + "\n")
        elif key in ("h", "hunks"):
            return await self._hunks(request)
        else:
            self._say(HELP)
        return None

    async def _hunks(self, request: ApprovalRequest) -> Decision | None:
        """Walk the hunks; the decision they make, or ``None`` (back to the menu) when no
        hunk was decided. Raises :class:`_EndOfInput` when input ends."""
        hunks = bundle_hunks(request.changes, request.base)
        if not hunks:
            self._say("The bundle has no hunks.\n")
            return None
        kept: list[str] = []
        rejected: list[str] = []
        for number, hunk in enumerate(hunks, 1):
            self._say(describe_hunk(hunk, number, len(hunks), request))
            key = await self._hunk_key()
            if key == "q":
                break
            (kept if key == "y" else rejected).append(hunk.id)
        if not kept and not rejected:
            self._say("No hunk decided.\n")
            return None
        undecided = len(hunks) - len(kept) - len(rejected)
        self._say(f"Kept {len(kept)}, rejected {len(rejected)}, undecided {undecided}.\n")
        reason = ""
        if rejected:
            answer = await self._ask(REASON)
            if answer is None:
                raise _EndOfInput
            reason = answer
        if len(kept) == len(hunks):
            return Decision(approved=True, actor="user")
        if len(rejected) == len(hunks):
            return Decision(approved=False, actor="user", feedback=reason)
        if not kept:
            return Decision(approved=False, actor="user", feedback=reason, hunks=rejected)
        if rejected:
            rest = frozenset(h.id for h in hunks) - set(kept)
            self._rejections[request.node_id] = _Rejection(
                request.bundle_id, tuple(rejected), rest, reason
            )
            self._say("The kept hunks are committed first; then the rejected ones are sent.\n")
        return Decision(approved=True, actor="user", hunks=kept)

    async def _hunk_key(self) -> str:
        """``y``, ``n`` or ``q`` for the hunk shown; other keys show the help and ask again."""
        while True:
            answer = await self._ask(f"Keep this hunk? {HUNK_MENU}: ")
            if answer is None:
                raise _EndOfInput
            key = answer.lower()
            if key in ("y", "yes", "n", "no", "q", "quit"):
                return key[0]
            self._say(HUNK_HELP)

    async def _edit(self, request: ApprovalRequest) -> Decision | None:
        editor = editor_command(self._env)
        edits = await asyncio.to_thread(edit_files, request.changes, editor, self._editor_runner)
        if edits is None:
            self._say(f"{editor[0]} failed; nothing was changed.\n")
            return None
        if not edits:
            self._say("No file was changed.\n")
            return None
        self._say(f"Edited {', '.join(escape(p) for p in sorted(edits))}; verifying again.\n")
        return Decision(approved=False, actor="user", edits=edits)

    async def settled(self, request: ApprovalRequest, settlement: Settlement) -> None:
        pending = self._rejections.get(request.node_id)
        if pending is not None and pending.bundle_id == request.bundle_id:
            if settlement.ledger_sha:
                self._rejections[request.node_id] = replace(pending, committed=True)
            else:  # the kept hunks are not in: nothing of the walk stands
                del self._rejections[request.node_id]
        if settlement.error:
            error = escape(settlement.error, keep="\n\t")
            self._say(f"{escape(request.node_id)}: not committed: {error}\n")
            if pending is not None and pending.bundle_id == request.bundle_id:
                self._say("The hunks you rejected were not sent either; decide again.\n")

    async def approve_command(self, node_id: str, command: str) -> bool:
        if not self._interactive:
            return False
        async with self._turn:
            answer = await self._ask(
                f"\n{escape(node_id)} wants to run `{escape(command)}` (not on the allow-list). "
                "Run it? [y/N]: "
            )
        return (answer or "").lower() in ("y", "yes")
