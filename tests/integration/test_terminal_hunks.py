"""Hunk review on a real terminal: ``keel agent`` (cautious, a ``replay:`` transcript) in a
pseudo-terminal, a bundle with two hunks in one file, ``h``, keep the first, reject the second
with a reason. The ledger commit (real git) holds the kept hunk alone; the rest comes back
without a model call and the rejection answers it unasked; the rejected lines and the reason
reach the model's next attempt (its prompt, stored with ``--log-llm``), whose bundle is then
approved."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from keel.bundles.hunks import bundle_hunks
from tests.integration.conftest import GIT_ENV, KEEL, bundle, git, node, plan, write_transcript
from tests.integration.test_terminal_approval import Terminal

BASE = "def add(a, b):\n    return a + b\n\n\nVERSION = 1\n"
AFTER = "def add(a: int, b: int) -> int:\n    return a + b\n\n\nVERSION = 2\n"
A_ONLY = "def add(a: int, b: int) -> int:\n    return a + b\n\n\nVERSION = 1\n"
THIRD = A_ONLY + "NOTE = 'kept at 1'\n"


def _events(workspace: Path, kind: str) -> list[dict[str, Any]]:
    with sqlite3.connect(workspace / ".keel" / "keel.db") as db:
        rows = db.execute("SELECT payload FROM events WHERE type = ? ORDER BY id", (kind,))
        return [json.loads(payload) for (payload,) in rows]


def _query(workspace: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(workspace / ".keel" / "keel.db") as db:
        return list(db.execute(sql).fetchall())


def test_keep_one_hunk_and_reject_the_other_with_a_reason(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    git(workspace, "init", "-q")
    (workspace / "calc.py").write_text(BASE)
    git(workspace, "add", "calc.py")
    git(workspace, "commit", "-q", "-m", "calc")
    a, b = (h.id for h in bundle_hunks({"calc.py": AFTER.encode()}, {"calc.py": BASE.encode()}))

    analysis = {"verdict": "unstable", "analysis": "the reviewer objected", "fix_hints": []}
    transcript = write_transcript(
        tmp_path / "transcript.jsonl",
        [
            plan(node("node-1", ["calc.py"], title="Type and bump")),
            bundle("node-1", writes={"calc.py": AFTER}),
            {"tier": "verifier", "node": "node-1", "attempt": 1, "reply": analysis},
            bundle("node-1", 2, writes={"calc.py": THIRD}),
        ],
    )
    argv = [*KEEL, "agent", "--mode", "cautious", "--log-llm", "-w", str(workspace)]
    argv += ["--model", f"replay:{transcript}", "Type add and bump VERSION"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env = {**env, **GIT_ENV, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / ".c")}
    term = Terminal(argv, env)

    term.expect("Approve node-1?")
    term.send("h")
    shown = term.expect("Keep this hunk?")
    assert "[1/2] calc.py @@ -1,1 +1,1 @@" in shown and "+def add(a: int, b: int) -> int:" in shown
    term.send("y")
    assert "[2/2] calc.py @@ -5,1 +5,1 @@" in term.expect("Keep this hunk?")
    term.send("n")
    term.expect("Reason for the rejected hunks (sent to the model, optional): ")
    term.send("keep VERSION at 1")
    # The kept hunk is committed, the rest proposed again and rejected as decided; the model's
    # next attempt is the next thing asked about.
    between = term.expect("Approve node-1?")
    assert f"Rejecting hunks {b} as you decided: keep VERSION at 1" in between
    term.send("d")
    assert "+NOTE = 'kept at 1'" in term.expect("Approve node-1?")
    term.send("y")
    assert term.wait() == 0, term.output

    log = git(workspace, "log", "--format=%H %s").splitlines()
    keel_commits = [line.split()[0] for line in log if " keel: " in line]
    assert len(keel_commits) == 2
    first, last = keel_commits[1], keel_commits[0]
    assert git(workspace, "show", f"{first}:calc.py") == A_ONLY  # the kept hunk alone
    patch = git(workspace, "show", "--format=", first)
    assert "+def add(a: int, b: int) -> int:" in patch and "VERSION" not in patch
    assert git(workspace, "show", f"{last}:calc.py") == THIRD
    assert (workspace / "calc.py").read_text() == THIRD
    assert f"[node-1] hunks {a} alone: V(x)=0.000, stable" in term.output
    assert f"[node-1] committed {first[:12]} (calc.py); the rest is verified again" in term.output
    assert f"[node-1] rejected hunks {b}; 0 left" in term.output

    calls = _query(
        workspace,
        "SELECT attempt, prompt FROM model_calls WHERE tier = 'actuator' ORDER BY id",
    )
    assert [attempt for attempt, _ in calls] == [1, 2]  # the rest was verified without a call
    assert "keep VERSION at 1" not in calls[0][1]
    heard = calls[1][1]
    assert "The reviewer rejected these changes:" in heard
    assert "calc.py @@ -5,1 +5,1 @@\n-VERSION = 1\n+VERSION = 2" in heard
    assert "Reason: keep VERSION at 1" in heard
    assert "def add(a, b)" not in heard.split("The reviewer rejected these changes:")[1]

    (verified,) = _events(workspace, "hunks_verified")
    assert verified["hunks"] == [a] and verified["stable"] is True
    (rejected,) = _events(workspace, "hunks_rejected")
    assert rejected["hunks"] == [b] and rejected["remaining"] == 0
    assert rejected["feedback"] == "keep VERSION at 1"
    approvals = _query(workspace, "SELECT decision, actor, note FROM approvals ORDER BY id")
    assert approvals[0] == ("approved", "user", f"hunks {a}")
    assert approvals[1][:2] == ("rejected", "user")
    assert approvals[2][:2] == ("approved", "user") and len(approvals) == 3
