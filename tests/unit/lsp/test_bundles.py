"""keel.lsp.bundles: claims, decisions the engine no longer waits for, recorded commits."""

from __future__ import annotations

import asyncio

import pytest
from pygls.exceptions import JsonRpcInvalidParams

from keel.engine.ports import ApprovalRequest, Decision, Settlement
from keel.lsp.bundles import BundleRegistry


def request(bundle_id: str = "b1") -> ApprovalRequest:
    return ApprovalRequest(
        "s-1",
        "node-1",
        "Title",
        bundle_id,
        "",
        {"v": 0.0},
        1,
        changes={"a.py": b"A = 1\n"},
        base={"a.py": None},
    )


async def test_a_bundle_whose_session_stopped_is_not_decided() -> None:
    registry = BundleRegistry()
    bundle = registry.propose("s-1", request())
    assert registry.claim("b1") is bundle and registry.is_pending(bundle)
    bundle.decision.cancel()  # the engine stopped waiting (its session was aborted)
    registry.retire(bundle)
    assert not registry.is_pending(bundle)
    assert registry.decide(bundle, Decision(True, "user"), "approved") is False
    assert bundle.settlement is None  # nobody would ever settle it
    with pytest.raises(JsonRpcInvalidParams, match="withdrawn: its session stopped"):
        registry.claim("b1")


async def test_a_decision_reaches_the_engine_once() -> None:
    registry = BundleRegistry()
    bundle = registry.propose("s-1", request())
    registry.claim("b1")
    assert registry.decide(bundle, Decision(True, "user"), "approved") is True
    assert bundle.decision.result().approved and bundle.settlement is not None
    assert registry.decide(bundle, Decision(False, "user"), "rejected") is False
    registry.settle(bundle.request, Settlement("abc123"))
    assert bundle.settlement.result().ledger_sha == "abc123"


async def test_waiting_for_the_recorded_commit() -> None:
    registry = BundleRegistry()
    loop = asyncio.get_running_loop()
    run: asyncio.Future[None] = loop.create_future()
    registry.committed("early")  # recorded before anyone waits
    assert await registry.wait_recorded("early", run) is True
    waiting = asyncio.ensure_future(registry.wait_recorded("late", run))
    await asyncio.sleep(0)
    assert not waiting.done()
    registry.committed("late")
    assert await waiting is True
    stopped = asyncio.ensure_future(registry.wait_recorded("never", run))
    await asyncio.sleep(0)
    run.set_result(None)  # the session ended first
    assert await stopped is False
    assert await registry.wait_recorded("never", None) is False


async def test_waiting_for_a_request_to_be_proposed_again() -> None:
    registry = BundleRegistry()
    asked = request()
    first = registry.propose("s-1", asked)
    registry.claim("b1")
    assert registry.decide(first, Decision(True, "user", hunks=["h"]), "approved")
    run: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiting = asyncio.ensure_future(registry.wait_proposed(asked, run))
    registry.settle(asked, Settlement(None, "hunks h alone are not stable"))
    registry.propose("s-1", request("other"))  # another request wakes nobody
    again = registry.propose("s-1", asked)  # the engine asks about the same bundle again
    assert await waiting is again and again.id == "b1" and registry.is_pending(again)
    # already pending: answered at once; a session that ended: None
    assert await registry.wait_proposed(asked, run) is again
    ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    gone = request("gone")
    late = asyncio.ensure_future(registry.wait_proposed(gone, ended))
    ended.set_result(None)
    assert await late is None
    assert await registry.wait_proposed(gone, ended) is None
