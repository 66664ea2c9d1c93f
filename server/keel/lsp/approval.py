"""Deciding a pending bundle from the editor: :class:`Approval` owns claim, decision, release.

Every decision (approve, reject, correct) first claims the bundle (exactly one of racing
requests proceeds), and a claim that decided nothing is released when the request ends
(:meth:`Approval.claimed`), so the bundle stays pending for the next one.

Approving, where the approve command is the authority, goes in order: claim the bundle
(exactly one of racing approvals proceeds); re-score its energy with the editor's
diagnostics of the proposed content and refuse while V(x) >= epsilon; compare every chosen
file with the file on disk and with the user's open buffer, so a bundle is never applied
over the user's edits (the engine re-bases or regenerates it); send ``workspace/applyEdit``
(``applied: false`` leaves the bundle pending); hand the decision to the engine, whose
ledger writes the files atomically and commits them; answer ``{"ledgerEntry": sha}`` once
the commit exists and the engine has recorded it.

After every ``await`` the bundle is checked again: a session that stopped meanwhile waits
for no decision, so approve fails instead of hanging. An edit the editor applied for an
approval that committed nothing (the session stopped, the commit failed) is taken back
(:class:`Undo`), so the editor never keeps unapproved content.

Rejecting or correcting a whole bundle hands the model the reviewer's words *and* the
editor's evidence about the proposed content (the diagnostics the editor's own servers
forwarded for it, re-scored as V_syn), so the regeneration sees the editor's errors. A
rejection of some files only drops them from the bundle: the rest is verified again and
proposed as a new bundle, without a model call.

Hunks (ids of ``keel.server.diff``) are decided the same way: approving some applies them to
the base in the editor and hands the engine the ids; it verifies them again as a bundle of
their own and commits them when stable, else the approval fails with V(x) and the evidence,
the editor's edit is taken back and the answer waits until the bundle is pending again.
Rejecting some hands the engine the ids: they leave the bundle and reach the model.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from lsprotocol import types as T

from keel.bundles.apply import write_changes
from keel.bundles.hunks import HunkSplit, bundle_hunks, split, unknown_ids
from keel.engine.models import Energy
from keel.engine.ports import Decision, Settlement
from keel.lsp.bundles import BundleRegistry, PendingBundle
from keel.lsp.client import ClientPort
from keel.lsp.convert import OpenText, bundle_edit, evidence_text, path_to_uri, uri_to_path
from keel.lsp.documents import DocumentTracker, EditorDiagnostics, digest
from keel.lsp.errors import failed, invalid
from keel.lsp.payloads import DecisionResult, LedgerEntryResult
from keel.lsp.scoring import Scoring
from keel.lsp.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass
class Claim:
    """The right to decide one bundle; ``decided`` once a decision was handed over."""

    bundle: PendingBundle
    decided: bool = False


class Approval:
    """Owns every decision on a pending bundle: its claim, the decision, and the release of a
    claim that decided nothing (approve, reject, correct)."""

    def __init__(
        self,
        *,
        bundles: BundleRegistry,
        documents: DocumentTracker,
        editor: EditorDiagnostics,
        editor_wait_s: float,
        scoring: Scoring,
        client: ClientPort,
        workspace: Workspace,
        runs: Mapping[str, asyncio.Task[Any]],
        changed: Callable[[], None],
    ) -> None:
        self._bundles, self._documents, self._editor = bundles, documents, editor
        self._editor_wait_s, self._scoring = editor_wait_s, scoring
        self._client, self._workspace, self._runs = client, workspace, runs
        self._changed = changed

    @contextmanager
    def claimed(self, bundle_id: str) -> Iterator[Claim]:
        """Claim ``bundle_id`` for one decision; a claim that decided nothing is released."""
        claim = Claim(self._bundles.claim(bundle_id))
        try:
            yield claim
        finally:
            if not claim.decided:
                self._bundles.release(claim.bundle)

    def chosen_paths(self, bundle: PendingBundle, uris: list[str] | None) -> list[str]:
        if uris is None:
            return list(bundle.files)
        assert self._workspace.root is not None
        paths = []
        for uri in uris:
            path = uri_to_path(uri, self._workspace.root)
            if path is None or path not in bundle.request.changes:
                raise invalid(
                    f"{uri} is not a file of bundle {bundle.id} (its files: {bundle.files})"
                )
            paths.append(path)
        return sorted(set(paths))

    def chosen_hunks(self, bundle: PendingBundle, ids: list[str]) -> HunkSplit:
        """The bundle split by the hunk ids given (InvalidParams naming the known ids if any
        id is not one of the bundle's)."""
        request = bundle.request
        hunks = bundle_hunks(request.changes, request.base)
        unknown = unknown_ids(hunks, ids)
        if unknown:
            known = ", ".join(f"{h.id} ({h.path} {h.header})" for h in hunks) or "none"
            raise invalid(
                f"no hunk {', '.join(unknown)} in bundle {bundle.id} (its hunks: {known}; "
                "keel.server.diff lists them)"
            )
        return split(request.changes, request.base, ids)

    async def editor_energy(self, bundle: PendingBundle) -> Energy:
        """The bundle's energy after waiting (bounded) for diagnostics of previewed files.

        A buffer that shows the proposal will get a report from the editor's servers; without
        one within ``editor_wait_s`` the checker's V_syn stands for that file.
        """
        waits, waited = [], []
        for path, new in bundle.request.changes.items():
            document = self._documents.by_path(path)
            if new is None or document is None or document.current != digest(new):
                continue
            if self._editor.for_content(path, document.current) is None:
                waits.append(self._editor.wait_for(path, document.current, self._editor_wait_s))
                waited.append(path)
        if waits:
            reports = await asyncio.gather(*waits)
            for path, report in zip(waited, reports, strict=True):
                if report is None:
                    log.info(
                        "no editor diagnostics for %s within %g s; the checker's V_syn stands",
                        path,
                        self._editor_wait_s,
                    )
        return self._scoring.pending_energy(bundle)

    def ensure_pending(self, bundle: PendingBundle, doing: str) -> None:
        """After every ``await``: the session may have stopped, and nobody waits any more."""
        if not self._bundles.is_pending(bundle):
            raise failed(
                f"bundle {bundle.id} was withdrawn while {doing}: its session stopped; nothing "
                "was committed (keel.server.resume continues the session)"
            )

    async def approve(
        self, bundle_id: str, uris: list[str] | None, hunks: list[str] | None = None
    ) -> LedgerEntryResult:
        """Approve the bundle, some of its files (``uris``) or some of its ``hunks`` (ids)."""
        with self.claimed(bundle_id) as claim:
            bundle = claim.bundle
            changes: Mapping[str, bytes | None] = bundle.request.changes
            base = bundle.request.base
            if hunks is not None:
                # The engine verifies the chosen hunks as a bundle of their own.
                changes = self.chosen_hunks(bundle, hunks).chosen
                paths = sorted(changes)
            else:
                paths = self.chosen_paths(bundle, uris)
                energy = await self.editor_energy(bundle)
                self.ensure_pending(bundle, "waiting for the editor's diagnostics")
                epsilon = self._scoring.epsilon_of(bundle.session_id)
                if not energy.stable(epsilon):
                    raise failed(
                        f"bundle {bundle.id} is not stable: V(x)={energy.total:.3f} >= epsilon "
                        f"{epsilon:g} ({evidence_text(energy)}); it stays pending: fix the code "
                        "or reject it"
                    )
            files = None if hunks is not None or len(paths) == len(bundle.files) else paths
            whole = files is None and hunks is None
            host = await self._workspace.host()
            on_disk = dict(
                zip(paths, await asyncio.gather(*(host.ledger.read(p) for p in paths)), strict=True)
            )
            self.ensure_pending(bundle, "reading the workspace")
            moved = [p for p in paths if on_disk[p] not in (base[p], changes[p], *_empty(base[p]))]
            if moved:
                claim.decided = True
                settlement = await self.decide(
                    bundle, Decision(True, "user", files=files, hunks=hunks)
                )
                if settlement is not None and settlement.ledger_sha:
                    await self.recorded(bundle, settlement.ledger_sha)
                    return LedgerEntryResult(ledger_entry=settlement.ledger_sha)
                raise failed(
                    f"{', '.join(moved)} changed on disk since bundle {bundle.id} was made; Keel "
                    "re-bases the bundle onto the current file (or regenerates it on a conflict) "
                    "and proposes it again"
                )
            open_buffers = self._documents.buffers(paths)
            merged = await self.merged_onto_buffers(bundle, open_buffers)
            self.ensure_pending(bundle, "merging it onto unsaved edits")
            if merged:
                claim.decided = True
                self._bundles.decide(bundle, Decision(False, "user", edits=merged), "re-based")
                self._changed()
                raise failed(
                    f"{', '.join(sorted(merged))} has unsaved edits; Keel merged bundle "
                    f"{bundle.id} onto them and proposes the merged bundle again "
                    "(keel/bundleProposed follows)"
                )
            plan = bundle_edit(
                {p: changes[p] for p in paths},
                base,
                open_buffers,
                self._workspace.root or host.workspace,
                self._client.edit_caps(),
                label=f"Keel: {bundle.title}",
                description=f"{bundle.node_id}, bundle {bundle.id}",
                encoding=self._client.position_encoding(),
            )
            applied = False
            if plan.edit is not None and self._client.supports("workspace.apply_edit", False):
                params = T.ApplyWorkspaceEditParams(edit=plan.edit, label=f"Keel: {bundle.title}")
                result = await self._client.apply_edit(params)
                if not result.applied:
                    self.ensure_pending(bundle, "the editor was asked to apply it")
                    reason = result.failure_reason or "declined"
                    raise failed(
                        f"the editor did not apply bundle {bundle.id} ({reason}); it stays pending"
                    )
                applied = True
            undo = (
                Undo(
                    self._client,
                    self._documents,
                    self._workspace,
                    bundle,
                    paths,
                    open_buffers,
                    plan.created,
                    proposal=changes,
                )
                if applied
                else None
            )
            if not self._bundles.is_pending(bundle):
                note = await undo.run() if undo else ""
                raise failed(
                    f"bundle {bundle.id} was withdrawn while the editor applied it: its session "
                    f"stopped; nothing was committed{note}"
                )
            claim.decided = True
            settlement = await self.decide(
                bundle, Decision(True, "user", files=files, created=plan.created, hunks=hunks)
            )
            if settlement is None:
                sha = await self.committed_anyway(bundle, paths, whole=whole)
                if sha is not None:
                    return LedgerEntryResult(ledger_entry=sha)
                note = await undo.run() if undo else ""
                raise failed(f"bundle {bundle.id} was not committed: its session stopped{note}")
            if settlement.error or not settlement.ledger_sha:
                note = await undo.run() if undo else ""
                if hunks is not None:
                    # the engine asks again about the same bundle: answer once it is pending
                    await self._bundles.wait_proposed(
                        bundle.request, self._runs.get(bundle.session_id)
                    )
                    raise failed(f"{settlement.error}; nothing was committed{note}")
                raise failed(
                    f"bundle {bundle.id} was not committed: {settlement.error}; Keel proposes it "
                    f"again{note}"
                )
            await self.recorded(bundle, settlement.ledger_sha)
            return LedgerEntryResult(ledger_entry=settlement.ledger_sha)

    async def recorded(self, bundle: PendingBundle, sha: str) -> None:
        """Answer an approval only once the engine recorded the commit (``node_committed``)."""
        await self._bundles.wait_recorded(sha, self._runs.get(bundle.session_id))

    async def committed_anyway(
        self, bundle: PendingBundle, paths: list[str], *, whole: bool
    ) -> str | None:
        """The session stopped after the decision: did its commit make it into the ledger?

        A session cancelled while git commits lets the commit finish without anyone settling it;
        the ledger (git) is the truth.
        """
        host = await self._workspace.host()
        for entry in await host.ledger.entries(5):
            if (
                entry.session == bundle.session_id
                and entry.node == bundle.node_id
                and set(paths) <= set(entry.files)
                and (not whole or entry.bundle.startswith(bundle.request.bundle_id))
            ):
                return entry.sha
        return None

    async def merged_onto_buffers(
        self, bundle: PendingBundle, open_buffers: dict[str, OpenText]
    ) -> dict[str, bytes | None]:
        """Never apply over unsaved edits: the bundle merged onto them, or a refusal.

        Applying the proposal over a buffer loses nothing when the buffer shows the base, the
        proposal, or edits the proposal already contains (a clean three-way merge of base,
        buffer and proposal gives the proposal). Otherwise a clean merge is returned, to become
        the bundle's new content (verified and proposed again); a conflict refuses.
        """
        changes, base = bundle.request.changes, bundle.request.base
        host = await self._workspace.host()
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

    async def decide(self, bundle: PendingBundle, decision: Decision) -> Settlement | None:
        """Give the engine the decision; for an approval, wait until it was committed (or not).

        ``None`` when the session stopped (before the decision reached it, or before the commit).
        """
        how = "approved" if decision.approved else "rejected"
        if not self._bundles.decide(bundle, decision, how):
            return None
        self._changed()
        if bundle.settlement is None:
            return None
        waiting: set[asyncio.Future[Any]] = {bundle.settlement}
        run = self._runs.get(bundle.session_id)
        if run is None or run.done():
            if not bundle.settlement.done():
                return None  # the session ended: no settlement will come
        else:
            waiting.add(run)
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if bundle.settlement.done() and not bundle.settlement.cancelled():
            return bundle.settlement.result()
        return None

    async def reject(
        self,
        bundle_id: str,
        feedback: str,
        how: str,
        *,
        files: list[str] | None = None,
        hunks: list[str] | None = None,
    ) -> DecisionResult:
        """Reject (``how="rejected"``) or correct: the feedback reaches the model's next attempt.

        With ``files`` (URIs) that are not all of the bundle's, only those files are dropped;
        with ``hunks`` (ids), those hunks (the engine rejects the whole bundle when none is
        left), and their lines reach the model with the feedback.
        """
        with self.claimed(bundle_id) as claim:
            bundle = claim.bundle
            if hunks is not None:
                self.chosen_hunks(bundle, hunks)  # InvalidParams for an unknown id
                claim.decided = True
                decision = Decision(False, "user", feedback=feedback, hunks=hunks)
                self.hand_over(bundle, decision, f"rejected hunks {', '.join(hunks)}")
                return DecisionResult(bundle_id=bundle.id, decision="rejected")
            paths = self.chosen_paths(bundle, files)
            if len(paths) < len(bundle.files):
                claim.decided = True
                return self._reject_files(bundle, paths, feedback)
            await self.editor_energy(bundle)
            self.ensure_pending(bundle, "waiting for the editor's diagnostics")
            claim.decided = True
            full = "\n\n".join(part for part in (feedback, self.editor_feedback(bundle)) if part)
            correcting = how == "correcting"
            said = "rejected with a correction" if correcting else "rejected"
            decision = Decision(False, "user", feedback=full, correction=correcting)
            self.hand_over(bundle, decision, said)
            return DecisionResult(
                bundle_id=bundle.id, decision="correcting" if correcting else "rejected"
            )

    def _reject_files(self, bundle: PendingBundle, paths: list[str], reason: str) -> DecisionResult:
        """Drop ``paths`` from the bundle; the engine verifies the rest and proposes it again."""
        base = bundle.request.base
        dropped = {path: base.get(path) for path in paths}  # "edited" back to what they were
        decision = Decision(False, "user", feedback=reason, edits=dropped)
        self.hand_over(bundle, decision, f"rejected {', '.join(paths)}; the rest proposed again")
        return DecisionResult(bundle_id=bundle.id, decision="rejected")

    def hand_over(self, bundle: PendingBundle, decision: Decision, how: str) -> None:
        """Give the engine a rejection; it needs no answer back."""
        if not self._bundles.decide(bundle, decision, how):
            self.ensure_pending(bundle, "being decided")  # raises: the session stopped
        self._changed()

    def editor_feedback(self, bundle: PendingBundle, limit: int = 20) -> str:
        """What the editor's servers report about the proposed content, for the model."""
        residuals = [
            r for report in self._scoring.editor_sources(bundle).values() for r in report.residuals
        ]
        if not residuals:
            return ""
        lines = [f"- {r.describe()}" for r in residuals[:limit]]
        if len(residuals) > limit:
            lines.append(f"- ... {len(residuals) - limit} more")
        return "The editor's language servers report on the proposed content:\n" + "\n".join(lines)


class Undo:
    """Takes back what the editor applied for an approval that committed nothing.

    Buffers that got the proposal get their previous text back; files the editor created
    (empty) are deleted again; files it deleted are restored from the bundle's base. So the
    editor never keeps unapproved content, one save away from the disk.
    """

    def __init__(
        self,
        client: ClientPort,
        documents: DocumentTracker,
        workspace: Workspace,
        bundle: PendingBundle,
        paths: list[str],
        before: dict[str, OpenText],
        created: list[str],
        *,
        proposal: Mapping[str, bytes | None] | None = None,
    ) -> None:
        """``proposal``: what the editor was given (default: the bundle's changes)."""
        self._client, self._documents, self._workspace = client, documents, workspace
        self._bundle, self._paths = bundle, paths
        self._before, self._created = before, list(created)
        self._proposal = bundle.request.changes if proposal is None else proposal

    async def run(self) -> str:
        """Revert; returns a note for the command's error message."""
        try:
            reverted = await self._revert()
        except Exception as exc:  # the error message must still reach the user
            log.warning("could not revert bundle %s in the editor: %s", self._bundle.id, exc)
            return f"; reverting the editor's buffers failed ({exc}): check {self._paths}"
        return "; Keel reverted what the editor had applied" if reverted else ""

    async def _revert(self) -> bool:
        bundle = self._bundle
        changes, base = self._proposal, bundle.request.base
        host = await self._workspace.host()
        root = self._workspace.root or host.workspace
        targets: dict[str, bytes | None] = {}
        shown: dict[str, OpenText] = {}
        for path, old in self._before.items():
            new = changes[path]
            if new is None or path in self._created:
                continue
            proposal = new.decode("utf-8", "replace")
            if proposal == old.text:
                continue
            document = self._documents.by_path(path)
            if document is None:
                continue  # closed meanwhile: no buffer holds the proposal
            text = self._documents.text(document.uri)
            if text == proposal:
                version = document.version
            elif text == old.text:
                version = None  # the editor's didChange is still on its way
            else:
                log.warning("%s changed again in the editor; not reverting it", path)
                continue
            shown[path] = OpenText(document.uri, version, proposal)
            targets[path] = old.text.encode("utf-8")
        caps = replace(self._client.edit_caps(), annotations=False)
        label = f"Keel: revert {bundle.title} (not committed)"
        plan = bundle_edit(
            targets,
            {},
            shown,
            root,
            caps,
            label=label,
            description=label,
            encoding=self._client.position_encoding(),
            file_operations=False,
        )
        operations: list[T.TextDocumentEdit | T.CreateFile | T.RenameFile | T.DeleteFile] = []
        if plan.edit is not None and plan.edit.document_changes:
            operations.extend(plan.edit.document_changes)
        if caps.document_changes and "delete" in caps.resource_operations:
            for path in self._created:
                if await host.ledger.read(path) == b"":  # still as the editor created it
                    operations.append(
                        T.DeleteFile(
                            uri=path_to_uri(root, path),
                            options=T.DeleteFileOptions(ignore_if_not_exists=True),
                        )
                    )
        restored = [p for p in self._paths if changes[p] is None and base.get(p) is not None]
        restore = {p: base[p] for p in restored if await host.ledger.read(p) is None}
        if restore:  # the editor deleted them (DeleteFile): put them back on disk
            await asyncio.to_thread(write_changes, root, restore)
        edit = plan.edit
        if operations:
            edit = T.WorkspaceEdit(document_changes=operations)
        if edit is None or not self._client.supports("workspace.apply_edit", False):
            return bool(restore)
        result = await self._client.apply_edit(T.ApplyWorkspaceEditParams(edit=edit, label=label))
        if not result.applied:
            log.warning("the editor did not revert bundle %s: %s", bundle.id, result.failure_reason)
            return bool(restore)
        return True


def _empty(base: bytes | None) -> tuple[bytes, ...]:
    """An editor may have created a new file empty; that is not a user edit.

    Empty as editors send it: Neovim's text of an empty buffer is one line ending, ``"\n"``
    (its ``'eol'``), which is what a review view that opened the file to come holds.
    """
    return (b"", b"\n", b"\r\n") if base is None else ()
