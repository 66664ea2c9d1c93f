"""The review commands besides approve: reject, correct, diff, the ledger and rollback.

Rejecting or correcting a whole bundle hands the model the reviewer's words *and* the
editor's evidence about the proposed content (the diagnostics the editor's own servers
forwarded for it, re-scored as V_syn), so the regeneration sees the editor's errors. A
rejection of some files only drops them from the bundle: the rest is verified again and
proposed as a new bundle, without a model call.

A rollback changes files on disk (through the ledger, as a new commit); open buffers are
then brought to the same content with ``workspace/applyEdit``. It refuses while one of the
entry's files has unsaved edits in the editor, which the revert would otherwise override.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Literal

from lsprotocol import types as T

from keel.bundles.diff import unified_diff
from keel.engine.ports import ConflictError, Decision
from keel.lsp.approval import buffers, chosen_paths, editor_energy, ensure_pending
from keel.lsp.bundles import PendingBundle
from keel.lsp.convert import bundle_edit, path_to_uri
from keel.lsp.errors import failed, invalid
from keel.lsp.payloads import (
    DecisionResult,
    DiffFile,
    DiffResult,
    LedgerEntry,
    LedgerEntryResult,
    LedgerResult,
)
from keel.lsp.scoring import editor_sources

if TYPE_CHECKING:
    from keel.lsp.server import KeelLanguageServer


async def reject(
    server: KeelLanguageServer,
    bundle_id: str,
    feedback: str,
    how: str,
    *,
    files: list[str] | None = None,
) -> DecisionResult:
    """Reject (``how="rejected"``) or correct: the feedback reaches the model's next attempt.

    With ``files`` (URIs) that are not all of the bundle's, only those files are dropped.
    """
    bundle = server.bundles.claim(bundle_id)
    decided = False
    try:
        paths = chosen_paths(server, bundle, files)
        if len(paths) < len(bundle.files):
            decided = True
            return _reject_files(server, bundle, paths, feedback)
        await editor_energy(server, bundle)
        ensure_pending(server, bundle, "waiting for the editor's diagnostics")
        decided = True
        full = "\n\n".join(part for part in (feedback, editor_feedback(server, bundle)) if part)
        said = "rejected" if how == "rejected" else "rejected with a correction"
        hand_over(server, bundle, Decision(False, "user", feedback=full), said)
        return DecisionResult(
            bundle_id=bundle.id, decision="correcting" if how == "correcting" else "rejected"
        )
    finally:
        if not decided:
            server.bundles.release(bundle)


def _reject_files(
    server: KeelLanguageServer, bundle: PendingBundle, paths: list[str], reason: str
) -> DecisionResult:
    """Drop ``paths`` from the bundle; the engine verifies the rest and proposes it again."""
    base = bundle.request.base
    dropped = {path: base.get(path) for path in paths}  # "edited" back to what they were
    decision = Decision(False, "user", feedback=reason, edits=dropped)
    hand_over(server, bundle, decision, f"rejected {', '.join(paths)}; the rest proposed again")
    return DecisionResult(bundle_id=bundle.id, decision="rejected")


def hand_over(
    server: KeelLanguageServer, bundle: PendingBundle, decision: Decision, how: str
) -> None:
    """Give the engine a rejection; it needs no answer back."""
    if not server.bundles.decide(bundle, decision, how):
        ensure_pending(server, bundle, "being decided")  # raises: the session stopped
    server.refresh.schedule()


def editor_feedback(server: KeelLanguageServer, bundle: PendingBundle, limit: int = 20) -> str:
    """What the editor's servers report about the proposed content, for the model."""
    residuals = [r for report in editor_sources(server, bundle).values() for r in report.residuals]
    if not residuals:
        return ""
    lines = [f"- {r.describe()}" for r in residuals[:limit]]
    if len(residuals) > limit:
        lines.append(f"- ... {len(residuals) - limit} more")
    return "The editor's language servers report on the proposed content:\n" + "\n".join(lines)


def diff(server: KeelLanguageServer, bundle_id: str) -> DiffResult:
    bundle = server.bundles.get(bundle_id)
    if bundle is None:
        raise invalid(f"no pending bundle {bundle_id}")
    assert server.root is not None
    files = []
    for path in bundle.files:
        before, after = bundle.request.base.get(path), bundle.request.changes[path]
        change: Literal["create", "modify", "delete"] = (
            "create" if before is None else "delete" if after is None else "modify"
        )
        files.append(
            DiffFile(
                uri=path_to_uri(server.root, path),
                path=path,
                change=change,
                before=(before or b"").decode("utf-8", "replace"),
                after=(after or b"").decode("utf-8", "replace"),
                unified_diff=unified_diff(path, before, after),
            )
        )
    return DiffResult(bundle_id=bundle.id, files=files)


async def ledger(server: KeelLanguageServer, limit: int | None) -> LedgerResult:
    host = await server.host()
    entries = await host.ledger.entries(limit or 10)
    return LedgerResult(
        [
            LedgerEntry(
                sha=entry.sha,
                title=entry.title,
                session_id=entry.session,
                node_id=entry.node,
                bundle=entry.bundle,
                energy=entry.energy,
                approved_by=entry.approved_by,
                timestamp=entry.timestamp,
                files=list(entry.files),
                reverts=entry.reverts,
            )
            for entry in entries
        ]
    )


async def rollback(server: KeelLanguageServer, entry: str) -> LedgerEntryResult:
    host = await server.host()
    record, _patch = await host.ledger.show(entry)
    paths = list(record.files)
    disk = await asyncio.gather(*(host.ledger.read(p) for p in paths))
    texts = buffers(server, paths)
    edited = [
        path
        for path, data in zip(paths, disk, strict=True)
        if path in texts and texts[path].text.encode("utf-8") != data
    ]
    if edited:
        raise failed(
            f"{', '.join(edited)} has unsaved edits; save or undo them before rolling back "
            f"{record.sha[:12]}"
        )
    try:
        sha = await host.ledger.rollback(entry)
    except ConflictError as exc:
        raise failed(str(exc)) from None
    after = await asyncio.gather(*(host.ledger.read(p) for p in paths))
    await sync_buffers(server, dict(zip(paths, after, strict=True)), f"Keel: revert {record.title}")
    return LedgerEntryResult(ledger_entry=sha)


async def sync_buffers(
    server: KeelLanguageServer, contents: dict[str, bytes | None], label: str
) -> None:
    """Bring open buffers to files the ledger just wrote (no file operations)."""
    assert server.root is not None
    open_buffers = buffers(server, list(contents))
    plan = bundle_edit(
        contents,
        {},
        open_buffers,
        server.root,
        server.edit_caps(),
        label=label,
        description=label,
        encoding=server.position_encoding(),
        file_operations=False,
    )
    if plan.edit is not None and server.supports("workspace.apply_edit", False):
        params = T.ApplyWorkspaceEditParams(edit=plan.edit, label=label)
        await server.workspace_apply_edit_async(params)
