"""Approval on a terminal: the reviewer's side of ``keel agent`` without ``-y``.

Why a module of its own: the prompt loop, the editor round trip and their tests are more than
argument parsing, and the CLI should stay a thin shell. The keys are the ones the language
server offers as commands (docs/reference/lsp.md), so a reviewer meets the same choices in the
editor and on the terminal:

``y`` approve · ``n`` reject (with an optional reason the model hears) · ``c`` correct (the
correction text is required and reaches the model's next attempt) · ``e`` edit the proposed
files in ``$VISUAL``/``$EDITOR`` (default ``vi``); the edited bundle is verified again and
proposed again, without a model call · ``d`` show the diff.

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
from pathlib import Path
from typing import IO, TextIO

from keel.bundles.paths import escape
from keel.engine.ports import ApprovalRequest, Decision, Settlement

MENU = "[y]es / [n]o / [c]orrect / [e]dit / [d]iff"
HELP = (
    "  y  approve and commit\n"
    "  n  reject; an optional reason is sent to the model\n"
    "  c  correct: your instructions are sent to the model, which proposes again\n"
    "  e  edit the proposed files in $VISUAL/$EDITOR; the edit is verified and proposed again\n"
    "  d  show the diff\n"
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
            return await self._review_loop(request)

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
            return Decision(approved=False, actor="user", feedback=reason or "")
        if key in ("c", "correct"):
            text = await self._ask("Correction for the model: ")
            if text:
                return Decision(approved=False, actor="user", feedback=text)
            self._say("No correction given.\n")
        elif key in ("e", "edit"):
            return await self._edit(request)
        elif key in ("d", "diff"):
            diff = escape(request.diff, keep="\n\t")
            self._say(diff if diff.endswith("\n") else diff + "\n")
        else:
            self._say(HELP)
        return None

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
        if settlement.error:
            error = escape(settlement.error, keep="\n\t")
            self._say(f"{escape(request.node_id)}: not committed: {error}\n")

    async def approve_command(self, node_id: str, command: str) -> bool:
        if not self._interactive:
            return False
        async with self._turn:
            answer = await self._ask(
                f"\n{escape(node_id)} wants to run `{escape(command)}` (not on the allow-list). "
                "Run it? [y/N]: "
            )
        return (answer or "").lower() in ("y", "yes")
