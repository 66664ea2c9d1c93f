"""The review commands besides approve: reject, correct, diff, the ledger and rollback.

A rollback changes files on disk (through the ledger, as a new commit); open buffers are
then brought to the same content with ``workspace/applyEdit``. It refuses while one of the
entry's files has unsaved edits in the editor, which the revert would otherwise override.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from lsprotocol import types as T

from keel.bundles.diff import unified_diff
from keel.engine.ports import ConflictError, Decision
from keel.lsp.approval import buffers, decide
from keel.lsp.convert import bundle_edit, path_to_uri
from keel.lsp.errors import failed, invalid

if TYPE_CHECKING:
    from keel.lsp.server import KeelLanguageServer


async def reject(
    server: KeelLanguageServer, bundle_id: str, feedback: str, how: str
) -> dict[str, Any]:
    """Reject (``how="rejected"``) or correct: the feedback reaches the model's next attempt."""
    bundle = server.bundles.claim(bundle_id)
    await decide(server, bundle, Decision(False, "user", feedback=feedback))
    return {"bundleId": bundle.id, "decision": how}


def diff(server: KeelLanguageServer, bundle_id: str) -> dict[str, Any]:
    bundle = server.bundles.get(bundle_id)
    if bundle is None:
        raise invalid(f"no pending bundle {bundle_id}")
    assert server.root is not None
    files = []
    for path in bundle.files:
        before, after = bundle.request.base.get(path), bundle.request.changes[path]
        change = "create" if before is None else "delete" if after is None else "modify"
        files.append(
            {
                "uri": path_to_uri(server.root, path),
                "path": path,
                "change": change,
                "before": (before or b"").decode("utf-8", "replace"),
                "after": (after or b"").decode("utf-8", "replace"),
                "unifiedDiff": unified_diff(path, before, after),
            }
        )
    return {"bundleId": bundle.id, "files": files}


async def ledger(server: KeelLanguageServer, limit: int | None) -> list[dict[str, Any]]:
    host = await server.host()
    entries = await host.ledger.entries(limit or 10)
    out = []
    for entry in entries:
        record = asdict(entry)
        out.append(
            {
                "sha": record["sha"],
                "title": record["title"],
                "sessionId": record["session"],
                "nodeId": record["node"],
                "bundle": record["bundle"],
                "energy": record["energy"],
                "approvedBy": record["approved_by"],
                "timestamp": record["timestamp"],
                "files": list(record["files"]),
                "reverts": record["reverts"],
            }
        )
    return out


async def rollback(server: KeelLanguageServer, entry: str) -> dict[str, Any]:
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
    return {"ledgerEntry": sha}


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
