"""``keel replay``: run a stored session again, offline, from the model replies it recorded.

Why: a session's store holds every model reply it received (the ``steps`` table, kind
``model``, written for crash safety). Exported as a ``replay:`` transcript
(docs/reference/protocol.md) those replies drive the real engine again, with no model and no
network, so a run can be reproduced exactly (same plan, bundles, verification and ledger) or
re-run after a change to Keel's prompts, sensors or engine to see what the change does with
the same model behaviour.

The replay runs in a new directory, never in the original workspace: a fresh git repository
holding the workspace's committed tree as it was before the session's first ledger commit
(the first parent of its oldest entry), committed once as the starting point. The transcript
goes into that directory's ``.keel/`` (which git and the planner ignore). The CLI then runs the
session's task there with ``--model replay:<transcript>``, the session's stored configuration
and ``-y``.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keel.engine.ports import ConfigError, KeelError
from keel.engine.records import ModelCall, SessionRecord, StepRecord
from keel.ledger import GitLedger, git_command, git_environment
from keel.store import SqliteStore

Row = dict[str, Any]
_IDENTITY = {
    "GIT_AUTHOR_NAME": "Keel",
    "GIT_AUTHOR_EMAIL": "keel@localhost",
    "GIT_COMMITTER_NAME": "Keel",
    "GIT_COMMITTER_EMAIL": "keel@localhost",
}


@dataclass(frozen=True)
class PreparedReplay:
    """A directory ready for the replayed run, and where its transcript is."""

    workspace: Path
    transcript: Path
    entries: int
    base: str | None

    def describe(self, session_id: str) -> str:
        start = f"the tree of {self.base[:12]}" if self.base else "an empty tree"
        return (
            f"replaying {session_id} in {self.workspace} from {start}, driven by its "
            f"{self.entries} recorded replies ({self.transcript})"
        )


# --------------------------------------------------------------------------- transcript


def parse_step_id(step_id: str) -> tuple[str, str | None, int] | None:
    """``model:<tier>:<node|->:<attempt>`` as (tier, node, attempt); None for other steps.

    An exploration turn's step (``...:<attempt>:turn<N>``) gives the same key; its turn is
    :func:`step_turn`'s."""
    step_id = re.sub(r":turn\d+$", "", step_id)
    kind, _, rest = step_id.partition(":")
    tier, _, rest = rest.partition(":")
    node, _, attempt = rest.rpartition(":")
    if kind != "model" or not tier or not node or not attempt.isdigit():
        return None
    return tier, None if node == "-" else node, int(attempt)


def step_turn(step_id: str) -> int:
    """The exploration turn of a model step (1 for the first request of an attempt)."""
    found = re.search(r":turn(\d+)$", step_id)
    return int(found.group(1)) if found else 1


def transcript_entries(steps: Sequence[StepRecord], calls: Sequence[ModelCall]) -> list[Row]:
    """One transcript line per answered model step, with its model and token usage.

    A reply that called exploration tools becomes a line with its ``turn`` and
    ``tool_calls`` (the tools run again on replay); the answer stays a line without a turn,
    so it answers whichever turn asks for it."""
    usage = {(c.tier, c.node_id, c.attempt): c for c in calls if c.latency_s or c.ok}
    entries = []
    for step in steps:
        key = parse_step_id(step.step_id) if step.kind == "model" else None
        if key is None or not step.result:
            continue
        result = step.result
        tier, node, attempt = key
        entry: Row = {"tier": tier, "node": node, "attempt": attempt}
        tool_calls = result.get("tool_calls")
        if tool_calls:
            entry["turn"] = step_turn(step.step_id)
            entry["tool_calls"] = [
                {"name": c["name"], "arguments": c.get("arguments") or {}} for c in tool_calls
            ]
            entries.append(entry)
            continue
        text = result.get("text")
        if not isinstance(text, str):  # a damaged step answers nothing a replay could give
            continue
        entry["text"] = text
        model = str(result.get("model") or "")
        if model and not model.startswith("replay:"):  # the price table's name for the model
            entry["model"] = model
        call = usage.get(key)
        if call is not None:
            entry["usage"] = {
                "input_tokens": int(call.input_tokens),
                "output_tokens": int(call.output_tokens),
            }
        entries.append(entry)
    return entries


async def export_transcript(store: SqliteStore, session: SessionRecord, path: Path) -> int:
    """Write the session's recorded replies to ``path`` (JSON Lines); returns how many."""
    sid, records = session.id, store.session(session.id)
    entries = transcript_entries(await records.steps(), await records.model_calls())
    header = {
        "keel_transcript": 1,
        "task": session.task,
        "note": f"recorded replies of session {sid}, exported by keel replay",
    }
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in [header, *entries])
    try:
        await asyncio.to_thread(_write_text, path, text)
    except OSError as exc:
        raise KeelError(f"cannot write the transcript {path}: {exc.strerror or exc}") from exc
    return len(entries)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- workspace


def absolute(path: str) -> Path:
    return Path(os.path.abspath(path))


def target_for(into: str | None, workspace: Path, session_id: str) -> Path:
    """``--into`` made absolute, else ``<workspace>/../<workspace-name>-replay-<session>``."""
    if into:
        return absolute(into)
    return workspace.parent / f"{workspace.name}-replay-{session_id}"


async def base_revision(workspace: Path, session_id: str) -> str | None:
    """The commit the session started from: the first parent of its oldest ledger entry.

    A session that committed nothing started from no known commit; HEAD is the best guess.
    ``None`` means an empty tree (the session's first entry is the repository's root).
    """
    ledger = await GitLedger.open(workspace, create=False)
    mine = [e for e in await ledger.entries(None) if e.session == session_id]
    rev = f"{mine[-1].sha}^1" if mine else "HEAD"
    out = await _git(workspace, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", ok=(0, 1))
    return out.strip() or None


async def prepare(
    store: SqliteStore, session: SessionRecord, workspace: Path, target: Path
) -> PreparedReplay:
    """Create ``target`` with the session's starting tree and its transcript."""
    sid = session.id
    await asyncio.to_thread(_require_empty, target)
    base = await base_revision(workspace, sid)
    await _git(target.parent, "init", "-q", "-b", "main", str(target))
    if base is not None:
        await _copy_tree(workspace, base, target)
        await _git(target, "add", "-A", "-f")
        message = f"keel replay: the tree of {base[:12]}, where session {sid} started"
        await _git(target, "commit", "-q", "--allow-empty", "--no-verify", "-m", message)
    transcript = target / ".keel" / f"replay-{sid}.jsonl"
    count = await export_transcript(store, session, transcript)
    return PreparedReplay(target, transcript, count, base)


def _require_empty(target: Path) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"{target} exists and is not empty; choose another with --into DIR")
    target.parent.mkdir(parents=True, exist_ok=True)


async def _copy_tree(workspace: Path, rev: str, target: Path) -> None:
    """Extract the workspace's part of ``rev`` into ``target`` (``git archive``, tar filter)."""
    prefix = (await _git(workspace, "rev-parse", "--show-prefix")).strip()
    archive = await _git_bytes(workspace, "archive", "--format=tar", f"{rev}:{prefix}")

    def extract() -> None:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(target, filter="data")

    await asyncio.to_thread(extract)


async def _git(cwd: Path, *args: str, ok: Sequence[int] = (0,)) -> str:
    return (await _git_bytes(cwd, *args, ok=ok)).decode("utf-8", errors="replace")


async def _git_bytes(cwd: Path, *args: str, ok: Sequence[int] = (0,)) -> bytes:
    env = git_environment(_IDENTITY)  # no inherited GIT_* variable, no secret, no hook
    try:
        proc = await asyncio.to_thread(
            subprocess.run, git_command(*args), cwd=cwd, capture_output=True, env=env, check=False
        )
    except OSError as exc:
        raise KeelError(f"cannot run git: {exc.strerror or exc}") from exc
    if proc.returncode not in ok:
        detail = proc.stderr.decode(errors="replace").strip()
        raise KeelError(f"git {args[0]} failed in {cwd}: {detail}")
    return bytes(proc.stdout)
