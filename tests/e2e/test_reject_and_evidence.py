"""Rejecting and correcting from the editor, and the editor's diagnostics as evidence for the
engine: per-file rejection (the rest proposed again without a model call), the editor's
errors in the model's next prompt after a rejection or a correction, the editor's errors in
the final sheaf check, and the bounded wait for a report that never comes.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as T
from pygls.exceptions import JsonRpcException

from tests.e2e.bump import start_bump
from tests.e2e.conftest import OPTIONS, Starter
from tests.e2e.editor import Keel, error, git
from tests.e2e.test_review_flow import CALC, keel_commits
from tests.integration.conftest import bundle, node, plan

TWO_ATTEMPTS: dict[str, Any] = {**OPTIONS, "engine": {**OPTIONS["engine"], "max_attempts": 2}}
FIXED = "def add(a: int, b: int) -> int:\n    return int(a + b)\n"


def prompt(keel: Keel, tier: str, node_id: str, attempt: int) -> str:
    """The text the model got for (tier, node, attempt), as the fake model server saw it."""
    for request in keel.model.requests:
        headers = request.headers
        if (
            headers.get("X-Keel-Tier") == tier
            and headers.get("X-Keel-Node") == node_id
            and headers.get("X-Keel-Attempt") == str(attempt)
        ):
            return "\n".join(str(m.get("content")) for m in request.body["messages"])
    raise AssertionError(f"no {tier} request for {node_id} attempt {attempt}")


def actuator_calls(keel: Keel) -> int:
    return sum(r.headers.get("X-Keel-Tier") == "actuator" for r in keel.model.requests)


def events(root: Path, kind: str) -> list[dict[str, Any]]:
    with sqlite3.connect(root / ".keel" / "keel.db") as db:
        rows = db.execute("SELECT payload FROM events WHERE type = ? ORDER BY id", (kind,))
        return [json.loads(payload) for (payload,) in rows]


async def _three_files(start_keel: Starter, workspace: Path, **options: Any) -> Keel:
    (workspace / "b.py").write_text("B = 1\n")
    git(workspace, "add", "b.py")
    git(workspace, "commit", "-q", "-m", "b")
    writes = {"a.py": "A = 1\n", "b.py": "B = 2\n", "c.py": "C = 3\n"}
    keel: Keel = await start_keel(
        [
            plan(node("node-1", ["a.py", "b.py", "c.py"], title="Three files")),
            bundle("node-1", writes=writes),
            bundle("node-1", 2, writes={"a.py": "A = 1\n", "c.py": "C = 3\n"}),
        ],
        **options,
    )
    await keel.command("keel.server.startSession", {"task": "Add three Python modules"})
    return keel


async def test_rejecting_some_files_proposes_the_rest_again(
    start_keel: Starter, workspace: Path
) -> None:
    keel = await _three_files(start_keel, workspace)
    whole = await keel.proposal("node-1")
    assert whole["files"] == [keel.uri("a.py"), keel.uri("b.py"), keel.uri("c.py")]
    with pytest.raises(JsonRpcException) as stranger:
        await keel.command(
            "keel.server.reject", {"bundleId": whole["bundleId"], "files": [keel.uri("d.py")]}
        )
    assert stranger.value.code == -32602 and "is not a file of bundle" in str(stranger.value)
    calls = actuator_calls(keel)

    reason = "leave b.py as it is"
    argument = {"bundleId": whole["bundleId"], "reason": reason, "files": [keel.uri("b.py")]}
    rejected = await keel.command("keel.server.reject", argument)
    assert rejected == {"bundleId": whole["bundleId"], "decision": "rejected"}
    rest = await keel.proposal("node-1", 2)  # verified again, without the dropped file
    assert rest["files"] == [keel.uri("a.py"), keel.uri("c.py")]
    assert rest["energy"]["stable"] is True
    diff = await keel.command("keel.server.diff", {"bundleId": rest["bundleId"]})
    assert [f["path"] for f in diff["files"]] == ["a.py", "c.py"]
    assert actuator_calls(keel) == calls  # no model call
    assert (workspace / "b.py").read_text() == "B = 1\n" and not (workspace / "a.py").exists()
    (edited,) = events(workspace, "bundle_edited")
    assert edited["dropped"] == ["b.py"] and edited["feedback"] == reason
    with pytest.raises(JsonRpcException) as late:
        await keel.command("keel.server.approve", {"bundleId": whole["bundleId"]})
    assert "already decided: rejected b.py" in str(late.value)

    approved = await keel.command("keel.server.approve", {"bundleId": rest["bundleId"]})
    sha = approved["ledgerEntry"]
    assert git(workspace, "show", "--name-only", "--format=", sha).split() == ["a.py", "c.py"]
    assert keel_commits(workspace) == [sha]
    assert (workspace / "b.py").read_text() == "B = 1\n"


async def test_rejecting_a_file_the_node_needs_regenerates_with_the_reason(
    start_keel: Starter, workspace: Path
) -> None:
    keel = await _three_files(start_keel, workspace, options=TWO_ATTEMPTS)
    whole = await keel.proposal("node-1")
    argument = {"bundleId": whole["bundleId"], "reason": "not yet", "files": [keel.uri("a.py")]}
    await keel.command("keel.server.reject", argument)
    # Without a.py the node's own contract (it owns a.py) fails: the rest is not stable, so
    # the model makes a new attempt, told which file was rejected and why.
    second = await keel.proposal("node-1", 2)
    text = prompt(keel, "actuator", "node-1", 2)
    assert "The reviewer rejected a.py of the bundle. not yet" in text
    assert "owned file was not created" in text
    assert not (workspace / "a.py").exists() and not keel_commits(workspace)
    # The new attempt builds on what the reviewer kept (b.py's change and c.py): its bundle
    # writes a.py and c.py again, and b.py's change is still proposed.
    assert "shown as attempt 1 left them (not committed): b.py, c.py" in text
    assert second["files"] == [keel.uri("a.py"), keel.uri("b.py"), keel.uri("c.py")]


@pytest.mark.parametrize("how", ["reject", "correct"])
async def test_the_model_hears_the_reviewer_and_the_editor(
    start_keel: Starter, workspace: Path, how: str
) -> None:
    keel: Keel = await start_keel(
        [
            plan(node("node-1", ["calc.py"], title="Calculator module")),
            bundle("node-1", writes={"calc.py": CALC}),
            bundle("node-1", 2, writes={"calc.py": FIXED}),
        ],
        options=TWO_ATTEMPTS,
    )
    await keel.command("keel.server.startSession", {"task": "Add a Python calculator"})
    first = await keel.proposal("node-1")
    # The editor shows the proposal and its own server finds a problem the checker missed.
    version = keel.open("calc.py", CALC)
    keel.forward("calc.py", [error(1, "Returned type is not int", "mypy")], version)
    words = "return an int explicitly"
    if how == "reject":
        # Naming every file of the bundle is the whole-bundle rejection.
        argument = {"bundleId": first["bundleId"], "reason": words, "files": first["files"]}
        answer = await keel.command("keel.server.reject", argument)
        assert answer == {"bundleId": first["bundleId"], "decision": "rejected"}
    else:
        argument = {"bundleId": first["bundleId"], "feedback": words}
        answer = await keel.command("keel.server.correct", argument)
        assert answer == {"bundleId": first["bundleId"], "decision": "correcting"}

    second = await keel.proposal("node-1", 2)  # a new attempt of the model
    text = prompt(keel, "actuator", "node-1", 2)
    assert words in text
    assert "[mypy] calc.py:2: error: Returned type is not int" in text
    (rejected,) = events(workspace, "bundle_rejected")
    assert words in rejected["feedback"] and "Returned type is not int" in rejected["feedback"]

    keel.change("calc.py", FIXED)
    approved = await keel.command("keel.server.approve", {"bundleId": second["bundleId"]})
    assert keel_commits(workspace) == [approved["ledgerEntry"]]
    assert (workspace / "calc.py").read_text() == FIXED


async def test_the_final_sheaf_check_counts_the_editors_errors(
    start_keel: Starter, workspace: Path
) -> None:
    keel = await start_bump(start_keel, workspace)

    def report(edit: T.WorkspaceEdit) -> None:
        # The editor's server analyses the buffer once it shows the applied edit.
        version = keel.versions["calc.py"]
        keel.forward("calc.py", [error(4, "VERSION is never used", "Pylance")], version)

    keel.after_apply = report
    started = await keel.command("keel.server.startSession", {"task": "Bump the Python VERSION"})
    proposal = await keel.proposal("node-1")
    approved = await keel.command("keel.server.approve", {"bundleId": proposal["bundleId"]})
    assert keel_commits(workspace) == [approved["ledgerEntry"]]
    await keel.changes.wait_for(
        lambda items: any(c["sessionId"] == started["sessionId"] and c["outcome"] for c in items),
        "the session to finish",
    )
    status = await keel.command("keel.server.status")
    assert status["outcome"] == "partial" and "final sheaf check" in status["reason"]
    expected = "Keel sheaf check: [Pylance] calc.py:5: error: VERSION is never used"
    uri = keel.uri("calc.py")
    await keel.published.wait_for(
        lambda _: any(d.message == expected for d in keel.client.diagnostics.get(uri, [])),
        "the sheaf finding on calc.py",
    )
    (sheaf,) = [e for e in events(workspace, "verification") if e.get("stage") == "sheaf"]
    assert sheaf["stable"] is False and sheaf["v_sheaf"] > 0
    assert any(item.get("source") == "Pylance" for item in sheaf["evidence"])


async def test_without_a_report_approval_goes_on_after_the_bounded_wait(
    start_keel: Starter, workspace: Path
) -> None:
    keel: Keel = await start_keel(
        [
            plan(node("node-1", ["calc.py"], title="Calculator module")),
            bundle("node-1", writes={"calc.py": CALC}),
        ],
        env={"KEEL_LSP_EDITOR_WAIT_S": "0.2"},
    )
    await keel.command("keel.server.startSession", {"task": "Add a Python calculator"})
    proposal = await keel.proposal("node-1")
    keel.open("calc.py", CALC)  # the buffer shows the proposal; the editor never reports
    approved = await keel.command("keel.server.approve", {"bundleId": proposal["bundleId"]})
    assert keel_commits(workspace) == [approved["ledgerEntry"]]
    logged = [m.message for m in keel.client.log_messages]
    assert any(
        "no editor diagnostics for calc.py within 0.2 s; the checker's V_syn stands" in m
        for m in logged
    ), logged
