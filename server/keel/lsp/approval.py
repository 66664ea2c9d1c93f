"""Approving a bundle from the editor: the approve command is the authority.

In order: claim the bundle (exactly one of racing approvals proceeds); re-score its energy
with the editor's diagnostics of the proposed content and refuse while V(x) >= epsilon;
compare every chosen file with the file on disk and with the user's open buffer, so a
bundle is never applied over the user's edits (the engine re-bases or regenerates it);
send ``workspace/applyEdit`` (``applied: false`` leaves the bundle pending); hand the
decision to the engine, whose ledger writes the files atomically and commits them; answer
``{"ledgerEntry": sha}`` once the commit exists.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from lsprotocol import types as T

from keel.engine.models import Energy
from keel.engine.ports import Decision, Settlement
from keel.lsp import scoring
from keel.lsp.bundles import PendingBundle
from keel.lsp.convert import OpenText, bundle_edit, evidence_text, uri_to_path
from keel.lsp.documents import digest
from keel.lsp.errors import failed, invalid

if TYPE_CHECKING:
    from keel.lsp.server import KeelLanguageServer


def buffers(server: KeelLanguageServer, paths: list[str]) -> dict[str, OpenText]:
    """The open buffers among ``paths``, with their text as the editor has it."""
    out = {}
    for path in paths:
        document = server.documents.by_path(path)
        if document is not None:
            text = server.workspace.get_text_document(document.uri).source
            out[path] = OpenText(document.uri, document.version, text)
    return out


def chosen_paths(
    server: KeelLanguageServer, bundle: PendingBundle, uris: list[str] | None
) -> list[str]:
    if uris is None:
        return list(bundle.files)
    assert server.root is not None
    paths = []
    for uri in uris:
        path = uri_to_path(uri, server.root)
        if path is None or path not in bundle.request.changes:
            raise invalid(f"{uri} is not a file of bundle {bundle.id} (its files: {bundle.files})")
        paths.append(path)
    return sorted(set(paths))


async def editor_energy(server: KeelLanguageServer, bundle: PendingBundle) -> Energy:
    """The bundle's energy after waiting (bounded) for diagnostics of previewed files."""
    waits = []
    for path, new in bundle.request.changes.items():
        document = server.documents.by_path(path)
        if new is None or document is None or document.current != digest(new):
            continue
        if server.editor.for_content(path, document.current) is None:
            waits.append(server.editor.wait_for(path, document.current, server.editor_wait_s))
    if waits:
        await asyncio.gather(*waits)
    return scoring.pending_energy(server, bundle)


async def approve(
    server: KeelLanguageServer, bundle_id: str, uris: list[str] | None
) -> dict[str, Any]:
    bundle = server.bundles.claim(bundle_id)
    decided = False
    try:
        paths = chosen_paths(server, bundle, uris)
        energy = await editor_energy(server, bundle)
        epsilon = scoring.epsilon_of(server, bundle.session_id)
        if not energy.stable(epsilon):
            raise failed(
                f"bundle {bundle.id} is not stable: V(x)={energy.total:.3f} >= epsilon {epsilon:g}"
                f" ({evidence_text(energy)}); it stays pending: fix the code or reject it"
            )
        files = None if len(paths) == len(bundle.files) else paths
        changes, base = bundle.request.changes, bundle.request.base
        host = await server.host()
        on_disk = dict(
            zip(paths, await asyncio.gather(*(host.ledger.read(p) for p in paths)), strict=True)
        )
        moved = [p for p in paths if on_disk[p] not in (base[p], changes[p], *_empty(base[p]))]
        if moved:
            decided = True
            settlement = await decide(server, bundle, Decision(True, "user", files=files))
            if settlement is not None and settlement.ledger_sha:
                return {"ledgerEntry": settlement.ledger_sha}
            raise failed(
                f"{', '.join(moved)} changed on disk since bundle {bundle.id} was made; Keel "
                "re-bases the bundle onto the current file (or regenerates it on a conflict) "
                "and proposes it again"
            )
        open_buffers = buffers(server, paths)
        merged = await merged_onto_buffers(server, bundle, open_buffers)
        if merged:
            decided = True
            server.bundles.decide(bundle, Decision(False, "user", edits=merged), "re-based")
            raise failed(
                f"{', '.join(sorted(merged))} has unsaved edits; Keel merged bundle {bundle.id} "
                "onto them and proposes the merged bundle again (keel/bundleProposed follows)"
            )
        plan = bundle_edit(
            {p: changes[p] for p in paths},
            base,
            open_buffers,
            server.root or host.workspace,
            server.edit_caps(),
            label=f"Keel: {bundle.title}",
            description=f"{bundle.node_id}, bundle {bundle.id}",
            encoding=server.position_encoding(),
        )
        if plan.edit is not None and server.supports("workspace.apply_edit", False):
            params = T.ApplyWorkspaceEditParams(edit=plan.edit, label=f"Keel: {bundle.title}")
            result = await server.workspace_apply_edit_async(params)
            if not result.applied:
                reason = result.failure_reason or "declined"
                raise failed(
                    f"the editor did not apply bundle {bundle.id} ({reason}); it stays pending"
                )
        decided = True
        settlement = await decide(
            server, bundle, Decision(True, "user", files=files, created=plan.created)
        )
        if settlement is None:
            raise failed(f"bundle {bundle.id} was not committed: its session stopped")
        if settlement.error or not settlement.ledger_sha:
            raise failed(
                f"bundle {bundle.id} was not committed: {settlement.error}; Keel proposes it again"
            )
        return {"ledgerEntry": settlement.ledger_sha}
    finally:
        if not decided:
            server.bundles.release(bundle)


def _empty(base: bytes | None) -> tuple[bytes, ...]:
    """An editor may have created a new file empty; that is not a user edit."""
    return (b"",) if base is None else ()


async def merged_onto_buffers(
    server: KeelLanguageServer, bundle: PendingBundle, open_buffers: dict[str, OpenText]
) -> dict[str, bytes | None]:
    """Never apply over unsaved edits: the bundle merged onto them, or a refusal.

    Applying the proposal over a buffer loses nothing when the buffer shows the base, the
    proposal, or edits the proposal already contains (a clean three-way merge of base,
    buffer and proposal gives the proposal). Otherwise a clean merge is returned, to become
    the bundle's new content (verified and proposed again); a conflict refuses.
    """
    changes, base = bundle.request.changes, bundle.request.base
    host = await server.host()
    merged: dict[str, bytes | None] = {}
    conflicts = []
    for path, buffer in open_buffers.items():
        text = buffer.text.encode("utf-8")
        if text in (base[path], changes[path], *_empty(base[path])):
            continue
        result = await host.ledger.merge(base[path], text, changes[path])
        if result is None:
            conflicts.append(path)
        elif result != changes[path]:
            merged[path] = result
    if conflicts:
        raise failed(
            f"{', '.join(conflicts)} has unsaved edits that conflict with bundle {bundle.id}; "
            "save them (Keel then re-bases or regenerates the bundle on top of them) or undo "
            "them; the bundle stays pending"
        )
    return merged


async def decide(
    server: KeelLanguageServer, bundle: PendingBundle, decision: Decision
) -> Settlement | None:
    """Give the engine the decision; for an approval, wait until it was committed (or not)."""
    how = "approved" if decision.approved else "rejected"
    server.bundles.decide(bundle, decision, how)
    server.refresh.schedule()
    if bundle.settlement is None:
        return None
    waiting: set[asyncio.Future[Any]] = {bundle.settlement}
    run = server.runs.get(bundle.session_id)
    if run is not None:
        waiting.add(run)
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if bundle.settlement.done() and not bundle.settlement.cancelled():
        return bundle.settlement.result()
    return None
