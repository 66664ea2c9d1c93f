"""The review commands that decide nothing: a bundle's diff, the ledger and rollback.

(Approve, reject and correct decide a bundle: they are :class:`keel.lsp.approval.Approval`'s.)

A rollback changes files on disk (through the ledger, as a new commit); open buffers are
then brought to the same content with ``workspace/applyEdit``. It refuses while one of the
entry's files has unsaved edits in the editor, which the revert would otherwise override.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from lsprotocol import types as T

from keel.bundles.diff import unified_diff
from keel.bundles.hunks import Hunk, file_hunks
from keel.engine.ports import ConflictError
from keel.lsp.bundles import BundleRegistry
from keel.lsp.client import ClientPort
from keel.lsp.convert import bundle_edit, path_to_uri
from keel.lsp.documents import DocumentTracker
from keel.lsp.errors import failed, invalid
from keel.lsp.payloads import (
    DiffFile,
    DiffHunk,
    DiffResult,
    LedgerEntry,
    LedgerEntryResult,
    LedgerResult,
)
from keel.lsp.workspace import Workspace


def diff_hunk(hunk: Hunk) -> DiffHunk:
    """A hunk of ``keel.bundles.hunks`` as ``keel.server.diff`` sends it."""
    return DiffHunk(
        id=hunk.id,
        old_start=hunk.old_start,
        old_lines=hunk.old_lines,
        new_start=hunk.new_start,
        new_lines=hunk.new_lines,
        header=hunk.header,
        removed=list(hunk.removed),
        added=list(hunk.added),
    )


class Review:
    """Reading a pending bundle's diff and the ledger, and rolling a ledger entry back."""

    def __init__(
        self,
        *,
        bundles: BundleRegistry,
        documents: DocumentTracker,
        client: ClientPort,
        workspace: Workspace,
    ) -> None:
        self._bundles, self._documents = bundles, documents
        self._client, self._workspace = client, workspace

    def diff(self, bundle_id: str) -> DiffResult:
        bundle = self._bundles.get(bundle_id)
        if bundle is None:
            raise invalid(f"no pending bundle {bundle_id}")
        assert self._workspace.root is not None
        files = []
        for path in bundle.files:
            before, after = bundle.request.base.get(path), bundle.request.changes[path]
            change: Literal["create", "modify", "delete"] = (
                "create" if before is None else "delete" if after is None else "modify"
            )
            files.append(
                DiffFile(
                    uri=path_to_uri(self._workspace.root, path),
                    path=path,
                    change=change,
                    before=(before or b"").decode("utf-8", "replace"),
                    after=(after or b"").decode("utf-8", "replace"),
                    unified_diff=unified_diff(path, before, after),
                    hunks=[diff_hunk(h) for h in file_hunks(path, before, after)],
                )
            )
        return DiffResult(bundle_id=bundle.id, files=files)

    async def ledger(self, limit: int | None) -> LedgerResult:
        host = await self._workspace.host()
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

    async def rollback(self, entry: str) -> LedgerEntryResult:
        host = await self._workspace.host()
        record, _patch = await host.ledger.show(entry)
        paths = list(record.files)
        disk = await asyncio.gather(*(host.ledger.read(p) for p in paths))
        texts = self._documents.buffers(paths)
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
        await self.sync_buffers(
            dict(zip(paths, after, strict=True)), f"Keel: revert {record.title}"
        )
        return LedgerEntryResult(ledger_entry=sha)

    async def sync_buffers(self, contents: dict[str, bytes | None], label: str) -> None:
        """Bring open buffers to files the ledger just wrote (no file operations)."""
        assert self._workspace.root is not None
        open_buffers = self._documents.buffers(list(contents))
        plan = bundle_edit(
            contents,
            {},
            open_buffers,
            self._workspace.root,
            self._client.edit_caps(),
            label=label,
            description=label,
            encoding=self._client.position_encoding(),
            file_operations=False,
        )
        if plan.edit is not None and self._client.supports("workspace.apply_edit", False):
            params = T.ApplyWorkspaceEditParams(edit=plan.edit, label=label)
            await self._client.apply_edit(params)
