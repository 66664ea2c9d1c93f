"""Hunk review on a real terminal: ``keel agent`` (cautious, a ``replay:`` transcript) in a
pseudo-terminal, a bundle with two hunks in one file, ``h``, keep the first, reject the second
with a reason. The ledger commit (real git) holds the kept hunk alone; the rest comes back
without a model call and the rejection answers it unasked; the rejected lines and the reason
reach the model's next attempt (its prompt, stored with ``--log-llm``), whose bundle is then
approved."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from keel.bundles.hunks import bundle_hunks
from tests.integration.conftest import GIT_ENV, KEEL, bundle, git, node, plan, write_transcript
from tests.integration.test_terminal_approval import Terminal

BASE = "def add(a, b):\n    return a + b\n\n\nVERSION = 1\n"
AFTER = "def add(a: int, b: int) -> int:\n    return a + b\n\n\nVERSION = 2\n"
A_ONLY = "def add(a: int, b: int) -> int:\n    return a + b\n\n\nVERSION = 1\n"
THIRD = A_ONLY + "NOTE = 'kept at 1'\n"
ANALYSIS = {"verdict": "unstable", "analysis": "the reviewer objected", "fix_hints": []}


def _events(workspace: Path, kind: str) -> list[dict[str, Any]]:
    with sqlite3.connect(workspace / ".keel" / "keel.db") as db:
        rows = db.execute("SELECT payload FROM events WHERE type = ? ORDER BY id", (kind,))
        return [json.loads(payload) for (payload,) in rows]


def _query(workspace: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(workspace / ".keel" / "keel.db") as db:
        return list(db.execute(sql).fetchall())


def _start(
    tmp_path: Path, base: str, entries: list[dict[str, Any]], **extra: str
) -> tuple[Terminal, Path]:
    """``keel agent --mode cautious`` on a repository whose calc.py is ``base``."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    git(workspace, "init", "-q")
    (workspace / "calc.py").write_text(base)
    git(workspace, "add", "calc.py")
    git(workspace, "commit", "-q", "-m", "calc")
    transcript = write_transcript(tmp_path / "transcript.jsonl", entries)
    argv = [*KEEL, "agent", "--mode", "cautious", "--log-llm", "-w", str(workspace)]
    argv += ["--model", f"replay:{transcript}", "Change calc"]
    return Terminal(argv, {**_env(tmp_path), **extra}), workspace


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    return {**env, **GIT_ENV, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / ".c")}


def _resume(tmp_path: Path, workspace: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """``keel resume --last`` without a terminal."""
    return subprocess.run(
        [*KEEL, "resume", "--last", "-w", str(workspace), *flags],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=120,
        check=False,
    )


def _keel_commits(workspace: Path) -> list[str]:
    log = git(workspace, "log", "--format=%H %s").splitlines()
    return [line.split()[0] for line in log if " keel: " in line]


def _ids(base: str, after: str) -> list[str]:
    return [h.id for h in bundle_hunks({"calc.py": after.encode()}, {"calc.py": base.encode()})]


def test_keep_one_hunk_and_reject_the_other_with_a_reason(tmp_path: Path) -> None:
    a, b = _ids(BASE, AFTER)
    term, workspace = _start(
        tmp_path,
        BASE,
        [
            plan(node("node-1", ["calc.py"], title="Type and bump")),
            bundle("node-1", writes={"calc.py": AFTER}),
            {"tier": "verifier", "node": "node-1", "attempt": 1, "reply": ANALYSIS},
            bundle("node-1", 2, writes={"calc.py": THIRD}),
        ],
    )
    term.expect("Approve node-1?")
    term.send("h")
    shown = term.expect("Keep this hunk?")
    assert f"[1/2] calc.py @@ -1,1 +1,1 @@  hunk {a}" in shown
    assert "+def add(a: int, b: int) -> int:" in shown
    term.send("y")
    assert f"[2/2] calc.py @@ -5,1 +5,1 @@  hunk {b}" in term.expect("Keep this hunk?")
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

    keel_commits = _keel_commits(workspace)
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


CALLS = "def add(a, b):\n    return a + b\n\n\nVERSION = 1\n"
CALLS_AFTER = (
    "def add(a, b):\n    return plus(a, b)\n\n\nVERSION = 1\n"
    "\n\ndef plus(x, y):\n    return x + y\n"
)


def test_a_kept_hunk_that_is_not_stable_alone_sends_nothing_and_asks_again(
    tmp_path: Path,
) -> None:
    """Keep the call, reject the definition it needs: the call alone fails verification, so
    nothing is committed, the rejection is not sent either, and the same bundle is asked
    about again; approving it whole then commits it."""
    call, define = _ids(CALLS, CALLS_AFTER)
    term, workspace = _start(
        tmp_path,
        CALLS,
        [
            plan(node("node-1", ["calc.py"], title="Use plus")),
            bundle("node-1", writes={"calc.py": CALLS_AFTER}),
        ],
    )
    term.expect("Approve node-1?")
    term.send("h")
    term.expect("Keep this hunk?")
    term.send("y")
    assert "+def plus(x, y):" in term.expect("Keep this hunk?")
    term.send("n")
    term.expect("Reason for the rejected hunks")
    term.send("no helper")
    shown = term.expect("Approve node-1?")
    assert f"hunks {call} alone are not stable: V(x)=" in shown
    assert "The hunks you rejected were not sent either; decide again." in shown
    assert "Rejecting hunks" not in shown
    assert not _keel_commits(workspace)
    term.send("y")
    assert term.wait() == 0, term.output
    (only,) = _keel_commits(workspace)
    assert git(workspace, "show", f"{only}:calc.py") == CALLS_AFTER
    (verified,) = _events(workspace, "hunks_verified")
    assert verified["hunks"] == [call] and verified["stable"] is False
    assert not _events(workspace, "hunks_rejected")
    assert define not in "".join(p for (p,) in _query(workspace, "SELECT note FROM approvals"))


def test_end_of_input_in_the_walk_leaves_the_node_awaiting_approval(tmp_path: Path) -> None:
    term, workspace = _start(
        tmp_path,
        BASE,
        [
            plan(node("node-1", ["calc.py"], title="Type and bump")),
            bundle("node-1", writes={"calc.py": AFTER}),
        ],
    )
    term.expect("Approve node-1?")
    term.send("h")
    term.expect("Keep this hunk?")
    term.send("y")
    term.expect("Keep this hunk?")
    term.send("n")
    term.expect("Reason for the rejected hunks")
    os.write(term.fd, b"\x04")  # Ctrl-D at the reason: nothing of the walk is sent
    assert term.wait() == 1, term.output
    assert "awaiting_approval" in term.output
    assert not _keel_commits(workspace)
    assert (workspace / "calc.py").read_text() == BASE
    assert not _events(workspace, "hunks_verified") and not _events(workspace, "hunks_rejected")
    assert _query(workspace, "SELECT decision FROM approvals") == []


def test_a_kill_before_the_kept_hunks_commit_keeps_them_for_resume(tmp_path: Path) -> None:
    """Killed between the walk and the ledger commit: ``keel resume`` (no terminal) commits the
    kept hunk as the user's recorded approval; the rejection lived only in the killed process,
    so the rest waits for a reviewer instead of being decided for them."""
    a, _ = _ids(BASE, AFTER)
    term, workspace = _start(
        tmp_path,
        BASE,
        [
            plan(node("node-1", ["calc.py"], title="Type and bump")),
            bundle("node-1", writes={"calc.py": AFTER}),
        ],
        KEEL_FAULT="ledger_before_commit",
    )
    term.expect("Approve node-1?")
    term.send("h")
    term.expect("Keep this hunk?")
    term.send("y")
    term.expect("Keep this hunk?")
    term.send("n")
    term.expect("Reason for the rejected hunks")
    term.send("keep VERSION at 1")
    assert term.wait() == -signal.SIGKILL, term.output
    assert not _keel_commits(workspace)

    resumed = _resume(tmp_path, workspace)
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    (only,) = _keel_commits(workspace)
    assert git(workspace, "show", f"{only}:calc.py") == A_ONLY
    assert (workspace / "calc.py").read_text() == A_ONLY
    assert not _events(workspace, "hunks_rejected")
    approvals = _query(workspace, "SELECT decision, actor, note FROM approvals ORDER BY id")
    assert approvals == [("approved", "user", f"hunks {a}")]
    # The rest (hunk b alone, on top of the commit) waits for a reviewer.
    assert resumed.stdout.rstrip().splitlines()[-2] == "[node-1] awaiting approval (complexity 1)"
    rest = _events(workspace, "awaiting_approval")[-1]
    assert (
        rest["files"] == ["calc.py"]
        and rest["bundle"] != _events(workspace, "hunks_verified")[0]["bundle"]
    )


def test_keep_reject_and_stop_commits_in_two_steps_without_a_model_call(tmp_path: Path) -> None:
    """Three hunks: keep the first, reject the second, ``q`` at the third. The first is
    committed, the rejection answers the rest unasked, and the third comes back alone to be
    asked about; all without a second model call."""
    before = "A = 1\n\nB = 1\n\nC = 1\n"
    after = "A = 2\n\nB = 2\n\nC = 2\n"
    a, b, c = _ids(before, after)
    term, workspace = _start(
        tmp_path,
        before,
        [
            plan(node("node-1", ["calc.py"], title="Bump three")),
            bundle("node-1", writes={"calc.py": after}),
        ],
    )
    term.expect("Approve node-1?")
    term.send("h")
    for key in ("y", "n"):
        term.expect("Keep this hunk?")
        term.send(key)
    third = term.expect("Keep this hunk?").replace("\r\n", "\n")  # a terminal's line ends
    assert f"[3/3] calc.py @@ -5,1 +5,1 @@  hunk {c}\n-C = 1\n+C = 2\n" in third
    term.send("q")
    assert "Kept 1, rejected 1, undecided 1." in term.expect("Reason for the rejected hunks")
    term.send("B stays")
    shown = term.expect("Approve node-1?")
    assert f"Rejecting hunks {b} as you decided: B stays" in shown
    term.send("h")
    assert f"[1/1] calc.py @@ -5,1 +5,1 @@  hunk {c}" in term.expect("Keep this hunk?")
    term.send("y")
    assert term.wait() == 0, term.output

    second, first = _keel_commits(workspace)
    assert git(workspace, "show", f"{first}:calc.py") == "A = 2\n\nB = 1\n\nC = 1\n"
    assert git(workspace, "show", f"{second}:calc.py") == "A = 2\n\nB = 1\n\nC = 2\n"
    assert (workspace / "calc.py").read_text() == "A = 2\n\nB = 1\n\nC = 2\n"
    (rejected,) = _events(workspace, "hunks_rejected")
    assert rejected["hunks"] == [b] and rejected["remaining"] == 1
    assert rejected["feedback"] == "B stays"
    assert [e["hunks"] for e in _events(workspace, "hunks_verified")] == [[a]]
    calls = _query(workspace, "SELECT attempt FROM model_calls WHERE tier = 'actuator'")
    assert calls == [(1,)]


def test_a_kill_after_the_kept_hunk_is_committed_leaves_the_rest_to_propose(
    tmp_path: Path,
) -> None:
    """Killed just after git committed the kept hunk, before the store heard of it: the
    commit finished only part of the node, so ``keel resume`` proposes the other hunk (alone,
    on top of the commit) instead of calling the node done and dropping it."""
    a, _ = _ids(BASE, AFTER)
    term, workspace = _start(
        tmp_path,
        BASE,
        [
            plan(node("node-1", ["calc.py"], title="Type and bump")),
            bundle("node-1", writes={"calc.py": AFTER}),
        ],
        KEEL_FAULT="node_ledger_committed",
    )
    term.expect("Approve node-1?")
    term.send("h")
    term.expect("Keep this hunk?")
    term.send("y")
    term.expect("Keep this hunk?")
    term.send("q")
    assert term.wait() == -signal.SIGKILL, term.output
    (kept,) = _keel_commits(workspace)
    assert git(workspace, "show", f"{kept}:calc.py") == A_ONLY

    asked = _resume(tmp_path, workspace)
    assert asked.returncode == 1, asked.stdout + asked.stderr
    assert "[node-1] awaiting approval (complexity 1)" in asked.stdout
    approvals = _query(workspace, "SELECT decision, actor, ledger_sha, note FROM approvals")
    assert approvals == [("approved", "user", kept, f"hunks {a}")]  # completed from git

    done = _resume(tmp_path, workspace, "--mode", "yolo")
    assert done.returncode == 0, done.stdout + done.stderr
    rest, first = _keel_commits(workspace)
    assert first == kept
    patch = git(workspace, "show", "--format=", rest)
    lines = patch.splitlines()
    changed = [ln for ln in lines if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    assert changed == ["-VERSION = 1", "+VERSION = 2"]  # the other hunk alone
    assert (workspace / "calc.py").read_text() == AFTER
    calls = _query(workspace, "SELECT attempt FROM model_calls WHERE tier = 'actuator'")
    assert calls == [(1,)]  # the rest came back from the recorded reply
