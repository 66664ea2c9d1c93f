"""Pending bundles, keyed by bundle id: the engine waits on each one's decision.

The engine's :class:`~keel.engine.ports.Approver` call parks a :class:`PendingBundle` here
and awaits its decision. A command that decides a bundle first *claims* it; the claim is
taken synchronously (no ``await`` between the lookup and the mark), so of two approvals of
the same bundle racing, exactly one proceeds and the other is told the bundle is being
decided. A decided bundle stays known by id, so a late request learns how it was decided.

A command that awaits anything (the editor's diagnostics, ``workspace/applyEdit``) must ask
:meth:`BundleRegistry.is_pending` again afterwards: the session may have stopped meanwhile,
and then nobody waits for the decision. An approval answers only once the engine has
*recorded* its commit (the ``node_committed`` event, seen through :meth:`committed`), so
status and hovers right after it say committed.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from pygls.exceptions import JsonRpcInvalidParams

from keel.engine.ports import ApprovalRequest, Decision, Settlement

DECIDED_MEMORY = 500


@dataclass
class PendingBundle:
    """A stable bundle waiting for the editor's decision."""

    id: str
    session_id: str
    request: ApprovalRequest
    decision: asyncio.Future[Decision]
    settlement: asyncio.Future[Settlement] | None = None
    busy: bool = False
    files: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return self.request.title

    @property
    def node_id(self) -> str:
        return self.request.node_id


class BundleRegistry:
    """Every pending bundle of every session, and how recent ones were decided."""

    def __init__(self) -> None:
        self._pending: dict[str, PendingBundle] = {}
        self._settling: dict[str, PendingBundle] = {}
        self._decided: OrderedDict[str, str] = OrderedDict()
        self._commits: OrderedDict[str, None] = OrderedDict()
        self._commit_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._proposal_waiters: dict[int, list[asyncio.Future[PendingBundle]]] = {}

    def propose(self, session_id: str, request: ApprovalRequest) -> PendingBundle:
        bundle_id, n = request.bundle_id, 1
        while bundle_id in self._pending or bundle_id in self._settling:
            n += 1
            bundle_id = f"{request.bundle_id}-{n}"
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        bundle = PendingBundle(
            bundle_id, session_id, request, future, files=sorted(request.changes)
        )
        self._pending[bundle_id] = bundle
        self._decided.pop(bundle_id, None)
        for waiter in self._proposal_waiters.pop(id(request), []):
            if not waiter.done():
                waiter.set_result(bundle)
        return bundle

    async def wait_proposed(
        self, request: ApprovalRequest, run: asyncio.Future[Any] | None
    ) -> PendingBundle | None:
        """The pending bundle of ``request`` once the engine proposes it (again), or ``None``
        when its session ``run`` ends first (an approval of hunks that were not stable alone
        answers only once the bundle is pending again)."""
        for bundle in self._pending.values():
            if bundle.request is request:
                return bundle
        if run is None or run.done():
            return None
        waiter: asyncio.Future[PendingBundle] = asyncio.get_running_loop().create_future()
        waiters = self._proposal_waiters.setdefault(id(request), [])
        waiters.append(waiter)
        try:
            await asyncio.wait({waiter, run}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._proposal_waiters.pop(id(request), None)
        return waiter.result() if waiter.done() and not waiter.cancelled() else None

    def pending(self) -> list[PendingBundle]:
        return list(self._pending.values())

    def get(self, bundle_id: str) -> PendingBundle | None:
        return self._pending.get(bundle_id)

    def for_path(self, path: str) -> list[PendingBundle]:
        return [b for b in self._pending.values() if path in b.request.changes]

    def claim(self, bundle_id: str) -> PendingBundle:
        """Take the right to decide ``bundle_id``, or raise the reason why not."""
        bundle = self._pending.get(bundle_id)
        if bundle is None:
            if bundle_id in self._settling:
                raise JsonRpcInvalidParams(f"bundle {bundle_id} is being committed")
            how = self._decided.get(bundle_id)
            if how is not None:
                raise JsonRpcInvalidParams(f"bundle {bundle_id} was already decided: {how}")
            raise JsonRpcInvalidParams(
                f"no pending bundle {bundle_id} (keel.server.status lists the pending ones)"
            )
        if bundle.busy:
            raise JsonRpcInvalidParams(
                f"bundle {bundle_id} is already being decided by another request"
            )
        bundle.busy = True
        return bundle

    def is_pending(self, bundle: PendingBundle) -> bool:
        """Whether the engine still waits for a decision on ``bundle``."""
        return self._pending.get(bundle.id) is bundle and not bundle.decision.done()

    def release(self, bundle: PendingBundle) -> None:
        """End a claim that decided nothing: the bundle stays pending."""
        bundle.busy = False

    def decide(self, bundle: PendingBundle, decision: Decision, how: str) -> bool:
        """Hand the decision to the waiting engine; approvals then await their settlement.

        False (and nothing decided) when the engine no longer waits: its session stopped.
        """
        if not self.is_pending(bundle):
            return False
        self._pending.pop(bundle.id, None)
        self._remember(bundle.id, how)
        if decision.approved:
            bundle.settlement = asyncio.get_running_loop().create_future()
            self._settling[bundle.id] = bundle
        bundle.decision.set_result(decision)
        return True

    def settle(self, request: ApprovalRequest, settlement: Settlement) -> None:
        for key, bundle in list(self._settling.items()):
            if bundle.request is request:
                del self._settling[key]
                if settlement.ledger_sha:
                    self._remember(key, f"approved (ledger entry {settlement.ledger_sha})")
                else:
                    self._remember(key, f"approved but not committed: {settlement.error}")
                if bundle.settlement is not None and not bundle.settlement.done():
                    bundle.settlement.set_result(settlement)

    def retire(self, bundle: PendingBundle) -> None:
        """The engine stopped waiting for an undecided bundle (its session stopped)."""
        if self._pending.pop(bundle.id, None) is not None:
            self._remember(bundle.id, "withdrawn: its session stopped")

    def session_ended(self, session_id: str) -> None:
        """No settlement will come for a session that ended: release who waits for one."""
        for key, bundle in list(self._settling.items()):
            if bundle.session_id == session_id:
                del self._settling[key]
                if bundle.settlement is not None and not bundle.settlement.done():
                    bundle.settlement.cancel()

    def committed(self, ledger_sha: str) -> None:
        """The engine recorded the commit ``ledger_sha`` (its ``node_committed`` event)."""
        self._commits[ledger_sha] = None
        while len(self._commits) > DECIDED_MEMORY:
            self._commits.popitem(last=False)
        for waiter in self._commit_waiters.pop(ledger_sha, []):
            if not waiter.done():
                waiter.set_result(None)

    async def wait_recorded(self, ledger_sha: str, run: asyncio.Future[Any] | None) -> bool:
        """Wait until the engine recorded ``ledger_sha``, or its session ``run`` ended."""
        if ledger_sha in self._commits:
            return True
        if run is None or run.done():
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._commit_waiters.setdefault(ledger_sha, []).append(waiter)
        try:
            await asyncio.wait({waiter, run}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiters = self._commit_waiters.get(ledger_sha, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._commit_waiters.pop(ledger_sha, None)
        return ledger_sha in self._commits

    def _remember(self, bundle_id: str, how: str) -> None:
        self._decided[bundle_id] = how
        self._decided.move_to_end(bundle_id)
        while len(self._decided) > DECIDED_MEMORY:
            self._decided.popitem(last=False)
