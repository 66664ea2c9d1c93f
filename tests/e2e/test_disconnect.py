"""An editor that disconnects mid-session: the session's state stays in the store, and it
continues on reconnect (``keel.server.resume``) or from a terminal (``keel resume``).

Closing the server's stdin is what an editor crash or quit looks like to ``keel serve``:
the running session is stopped cleanly (``aborted``), the node waiting for approval stays
``awaiting_approval``, the workspace lock is released and the process exits. Resuming
replays the recorded model replies: the model is not asked again.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.e2e.conftest import Starter, disconnect, server_env
from tests.e2e.editor import GIT_ENV, Keel
from tests.e2e.test_review_flow import CALC, keel_commits
from tests.integration.conftest import bundle, node, plan, run_keel

ENTRIES = [
    plan(node("node-1", ["calc.py"], title="Calculator module")),
    bundle("node-1", writes={"calc.py": CALC}),
]
TASK = "Add a Python calculator module"


def stored(workspace: Path) -> tuple[str | None, dict[str, str]]:
    with sqlite3.connect(workspace / ".keel" / "keel.db") as db:
        (outcome,) = db.execute("SELECT outcome FROM sessions").fetchone()
        nodes = dict(db.execute("SELECT node_id, state FROM nodes").fetchall())
    return outcome, nodes


async def _interrupted(start_keel: Starter, workspace: Path) -> tuple[Keel, str]:
    keel = await start_keel(ENTRIES)
    started = await keel.command("keel.server.startSession", {"task": TASK})
    await keel.proposal("node-1")
    assert await disconnect(keel) == 0
    outcome, nodes = stored(workspace)
    assert outcome == "aborted" and nodes == {"node-1": "awaiting_approval"}
    assert not keel_commits(workspace) and not (workspace / "calc.py").exists()
    return keel, started["sessionId"]


async def test_reconnect_and_resume_in_the_editor(start_keel: Starter, workspace: Path) -> None:
    first, session_id = await _interrupted(start_keel, workspace)
    asked = len(first.model.requests)

    keel = await start_keel(model=first.model)  # the editor comes back
    status = await keel.command("keel.server.status")
    assert status["sessionId"] == session_id
    assert [n["state"] for n in status["nodes"]] == ["awaiting_approval"]
    resumed = await keel.command("keel.server.resume", {})
    assert resumed == {"sessionId": session_id}
    proposal = await keel.proposal("node-1")
    approved = await keel.command("keel.server.approve", {"bundleId": proposal["bundleId"]})
    assert keel_commits(workspace) == [approved["ledgerEntry"]]
    assert (workspace / "calc.py").read_text() == CALC
    assert len(keel.model.requests) == asked  # every reply came from the store


async def test_keel_resume_continues_it_from_a_terminal(
    start_keel: Starter, workspace: Path, tmp_path: Path
) -> None:
    keel, session_id = await _interrupted(start_keel, workspace)
    env = {**server_env(tmp_path, keel.model, None), **GIT_ENV}
    done = run_keel("resume", "--last", "-y", "--json", "-w", str(workspace), env=env)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert events[-1]["type"] == "session_finished" and events[-1]["outcome"] == "success"
    assert events[-1]["session"] == session_id
    assert len(keel_commits(workspace)) == 1 and (workspace / "calc.py").read_text() == CALC
