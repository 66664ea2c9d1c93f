"""Per-hunk review over LSP (docs/reference/lsp.md, "Hunks"), for each client preset.

The must-show: a bundle with two hunks in one file; approving hunk A commits A alone (real
git); the rest comes back as a new bundle with B's same id; rejecting B with a reason puts
B's lines and the reason into the node's next model request; disk and buffer agree. Then
the adversarial cases: unknown, duplicate and empty ids, ``files`` with ``hunks``, a bundle
no longer pending, and a chosen hunk that is not stable alone (the approval fails with V(x)
and the evidence and the bundle stays pending, unchanged).
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as T
from pygls.exceptions import JsonRpcException

from tests.e2e.conftest import OPTIONS, Starter
from tests.e2e.editor import Keel, git, plain
from tests.e2e.test_reject_and_evidence import actuator_calls, events, prompt
from tests.e2e.test_review_flow import keel_commits
from tests.integration.conftest import bundle, node, plan

BASE = "def add(a, b):\n    return a + b\n\n\nVERSION = 1\n"
AFTER = "def add(a: int, b: int) -> int:\n    return a + b\n\n\nVERSION = 2\n"
A_ONLY = "def add(a: int, b: int) -> int:\n    return a + b\n\n\nVERSION = 1\n"
THIRD = A_ONLY + "NOTE = 'kept at 1'\n"
TWO_ATTEMPTS: dict[str, Any] = {**OPTIONS, "engine": {**OPTIONS["engine"], "max_attempts": 2}}


def _commit_base(workspace: Path, text: str) -> None:
    (workspace / "calc.py").write_text(text)
    git(workspace, "add", "calc.py")
    git(workspace, "commit", "-q", "-m", "calc")


async def _hunks(keel: Keel, bundle_id: str) -> list[dict[str, Any]]:
    diff = await keel.command("keel.server.diff", {"bundleId": bundle_id})
    (changed,) = diff["files"]
    return list(changed["hunks"])


async def test_approve_one_hunk_then_reject_the_other_with_a_reason(
    start_keel: Starter, workspace: Path
) -> None:
    _commit_base(workspace, BASE)
    keel: Keel = await start_keel(
        [
            plan(node("node-1", ["calc.py"], title="Type and bump")),
            bundle("node-1", writes={"calc.py": AFTER}),
            bundle("node-1", 2, writes={"calc.py": THIRD}),
        ],
        options=TWO_ATTEMPTS,
    )
    keel.open("calc.py", BASE)
    await keel.command("keel.server.startSession", {"task": "Type add and bump VERSION"})
    whole = await keel.proposal("node-1")
    a, b = await _hunks(keel, whole["bundleId"])
    assert (a["header"], a["removed"], a["added"]) == (
        "@@ -1,1 +1,1 @@",
        ["def add(a, b):"],
        ["def add(a: int, b: int) -> int:"],
    )
    assert (b["header"], b["removed"], b["added"]) == (
        "@@ -5,1 +5,1 @@",
        ["VERSION = 1"],
        ["VERSION = 2"],
    )

    # A CodeLens per hunk, at its line in the buffer (which shows the base).
    lenses = await keel.client.text_document_code_lens_async(
        T.CodeLensParams(text_document=T.TextDocumentIdentifier(uri=keel.uri("calc.py")))
    )
    shown = [
        (lens.range.start.line, lens.command.title, plain(lens.command.arguments))
        for lens in lenses or []
        if lens.command
    ]
    one = [{"bundleId": whole["bundleId"], "hunks": [a["id"]]}]
    other = [{"bundleId": whole["bundleId"], "hunks": [b["id"]]}]
    diff = [{"bundleId": whole["bundleId"]}]
    assert shown == [
        (0, "Keel: Approve hunk", one),
        (0, "Keel: Reject hunk", one),
        (0, "Keel: Diff", diff),
        (4, "Keel: Approve hunk", other),
        (4, "Keel: Reject hunk", other),
        (4, "Keel: Diff", diff),
    ]

    # Approve hunk A as its lens does.
    lens = next(x for x in lenses or [] if x.command and x.command.title == "Keel: Approve hunk")
    assert lens.command is not None
    approved = await keel.command(lens.command.command, *plain(lens.command.arguments))
    sha = approved["ledgerEntry"]
    assert keel_commits(workspace) == [sha]
    assert git(workspace, "show", f"{sha}:calc.py") == A_ONLY  # the commit holds A alone
    patch = git(workspace, "show", "--format=", sha)
    assert "+def add(a: int, b: int) -> int:" in patch and "VERSION" not in patch
    assert (workspace / "calc.py").read_text() == A_ONLY == keel.texts["calc.py"]
    (verified,) = events(workspace, "hunks_verified")
    assert verified["hunks"] == [a["id"]] and verified["stable"] is True

    calls = actuator_calls(keel)
    rest = await keel.proposal("node-1", 2)  # the rest, verified again: a new bundle
    assert rest["bundleId"] != whole["bundleId"]
    (again,) = await _hunks(keel, rest["bundleId"])
    assert again["id"] == b["id"] and again["added"] == ["VERSION = 2"]
    assert actuator_calls(keel) == calls  # without a model call

    answer = await keel.command(
        "keel.server.reject",
        {"bundleId": rest["bundleId"], "hunks": [b["id"]], "reason": "keep VERSION at 1"},
    )
    assert answer == {"bundleId": rest["bundleId"], "decision": "rejected"}
    third = await keel.proposal("node-1", 3)  # the model's next attempt
    text = prompt(keel, "actuator", "node-1", 2)
    assert "The reviewer rejected these changes:" in text
    assert "calc.py @@ -5,1 +5,1 @@\n-VERSION = 1\n+VERSION = 2" in text
    assert "Reason: keep VERSION at 1" in text
    (rejected,) = events(workspace, "hunks_rejected")
    assert rejected["hunks"] == [b["id"]] and rejected["remaining"] == 0
    assert (workspace / "calc.py").read_text() == A_ONLY == keel.texts["calc.py"]
    assert keel_commits(workspace) == [sha]

    done = await keel.command("keel.server.approve", {"bundleId": third["bundleId"]})
    assert keel_commits(workspace) == [done["ledgerEntry"], sha]
    assert (workspace / "calc.py").read_text() == THIRD == keel.texts["calc.py"]


CALLS = "def add(a, b):\n    return a + b\n\n\nVERSION = 1\n"
CALLS_AFTER = (
    "def add(a, b):\n    return plus(a, b)\n\n\nVERSION = 1\n"
    "\n\ndef plus(x, y):\n    return x + y\n"
)


async def test_bad_hunk_ids_and_an_unstable_subset_change_nothing(
    start_keel: Starter, workspace: Path
) -> None:
    _commit_base(workspace, CALLS)
    keel: Keel = await start_keel(
        [
            plan(node("node-1", ["calc.py"], title="Use plus")),
            bundle("node-1", writes={"calc.py": CALLS_AFTER}),
        ]
    )
    keel.open("calc.py", CALLS)
    await keel.command("keel.server.startSession", {"task": "Add a Python plus helper"})
    proposal = await keel.proposal("node-1")
    bundle_id = proposal["bundleId"]
    call, define = await _hunks(keel, bundle_id)
    assert call["added"] == ["    return plus(a, b)"] and "def plus(x, y):" in define["added"]

    bad: list[tuple[dict[str, Any], str]] = [
        ({"hunks": ["0badc0ffee00"]}, f"no hunk 0badc0ffee00 in bundle {bundle_id}"),
        ({"hunks": [call["id"], call["id"]]}, "hunk ids given twice"),
        ({"hunks": []}, "at least 1 item"),
        ({"hunks": [call["id"]], "files": [keel.uri("calc.py")]}, "files or hunks, not both"),
    ]
    for command in ("keel.server.approve", "keel.server.reject"):
        for extra, message in bad:
            with pytest.raises(JsonRpcException) as refused:
                await keel.command(command, {"bundleId": bundle_id, **extra})
            assert message in str(refused.value), refused.value
    with pytest.raises(JsonRpcException) as named:
        await keel.command("keel.server.approve", {"bundleId": bundle_id, "hunks": ["x"]})
    assert call["id"] in str(named.value) and define["id"] in str(named.value)

    # The call without its definition breaks what the whole bundle passes.
    with pytest.raises(JsonRpcException) as unstable:
        await keel.command("keel.server.approve", {"bundleId": bundle_id, "hunks": [call["id"]]})
    message = str(unstable.value)
    assert "alone are not stable: V(x)=" in message and "plus" in message, message
    assert "nothing was committed" in message
    status = await keel.command("keel.server.status")
    assert [b["bundleId"] for b in status["pendingBundles"]] == [bundle_id]
    assert await _hunks(keel, bundle_id) == [call, define]  # unchanged
    assert not keel_commits(workspace)
    assert (workspace / "calc.py").read_text() == CALLS == keel.texts["calc.py"]
    (verified,) = events(workspace, "hunks_verified")
    assert verified["stable"] is False and verified["evidence"]

    # Both together are stable; afterwards the old bundle's ids are refused.
    whole = await keel.command("keel.server.approve", {"bundleId": bundle_id})
    assert keel_commits(workspace) == [whole["ledgerEntry"]]
    assert (workspace / "calc.py").read_text() == CALLS_AFTER == keel.texts["calc.py"]
    with pytest.raises(JsonRpcException) as stale:
        await keel.command("keel.server.reject", {"bundleId": bundle_id, "hunks": [call["id"]]})
    assert "already decided" in str(stale.value)


async def test_a_kill_mid_hunk_approval_is_honoured_after_resume(
    start_keel: Starter, workspace: Path
) -> None:
    """Killed after the hunks' approval was recorded and before git committed (SIGKILL, no
    cleanup): the resumed session honours the reviewer's approval of that very bundle
    without asking again, verifying the hunks again first; the rest is proposed."""
    _commit_base(workspace, BASE)
    entries = [
        plan(node("node-1", ["calc.py"], title="Type and bump")),
        bundle("node-1", writes={"calc.py": AFTER}),
    ]
    first = await start_keel(entries, env={"KEEL_FAULT": "ledger_before_commit"})
    started = await first.command("keel.server.startSession", {"task": "Type add and bump"})
    whole = await first.proposal("node-1")
    a, b = await _hunks(first, whole["bundleId"])
    argument = {"bundleId": whole["bundleId"], "hunks": [a["id"]]}
    approving = asyncio.ensure_future(first.command("keel.server.approve", argument))
    process = first.client._server
    assert process is not None
    assert await asyncio.wait_for(process.wait(), 60) == -signal.SIGKILL
    approving.cancel()
    await asyncio.gather(approving, return_exceptions=True)
    first.client.seen_errors.clear()  # the server died on purpose
    with sqlite3.connect(workspace / ".keel" / "keel.db") as db:
        rows = db.execute("SELECT decision, ledger_sha, note FROM approvals").fetchall()
    assert rows == [("approved", None, f"hunks {a['id']}")]  # the intent, recorded
    assert not keel_commits(workspace)

    keel = await start_keel(model=first.model)  # the editor comes back, no fault this time
    assert await keel.command("keel.server.resume", {}) == {"sessionId": started["sessionId"]}
    rest = await keel.proposal("node-1")  # not asked about A again: B is what is left
    assert rest["bundleId"] != whole["bundleId"]
    assert await _hunks(keel, rest["bundleId"]) == [b]  # the same id, the same lines
    (sha,) = keel_commits(workspace)
    assert git(workspace, "show", f"{sha}:calc.py") == A_ONLY
    assert (workspace / "calc.py").read_text() == A_ONLY
    assert len(events(workspace, "hunks_verified")) == 2  # verified again after the kill
    with sqlite3.connect(workspace / ".keel" / "keel.db") as db:
        rows = db.execute("SELECT decision, ledger_sha FROM approvals").fetchall()
    assert rows == [("approved", sha)]
