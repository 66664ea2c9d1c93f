"""Control characters never reach the terminal as such: a title, node id, path or diff holding
``\\x1b[2J`` prints as those visible characters in ``keel ledger``, ``keel ledger show``,
``keel status`` and the approval prompt, through the real CLI (``--json`` keeps the data)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from tests.integration.conftest import (
    KEEL,
    bundle,
    git,
    node,
    plan,
    run_keel,
    run_session,
    write_transcript,
)
from tests.integration.test_terminal_approval import Terminal

CLEAR = "\x1b[2J"
SHOWN = "\\x1b[2J"


def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "GIT_"))}
    return {**env, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / ".config")}


def test_keel_ledger_escapes_what_git_history_holds(tmp_path: Path) -> None:
    """Anyone can write a commit with Keel's trailers; its subject cannot drive the terminal."""
    ws = tmp_path / "ws"
    ws.mkdir()
    git(ws, "init", "-q", "-b", "main")
    (ws / "a.txt").write_text(f"text {CLEAR}\n")
    git(ws, "add", "a.txt")
    message = (
        f"keel: Calc {CLEAR} module\n\nKeel-Session: s-1\nKeel-Node: n{CLEAR}1\n"
        "Keel-Bundle: abc\nKeel-Energy: V=0.000\nKeel-Approved-By: user\n"
    )
    git(ws, "commit", "-q", "-m", message)
    env = cli_env(tmp_path)
    listing = run_keel("ledger", "-w", str(ws), env=env)
    assert listing.returncode == 0, listing.stderr
    assert f"Calc {SHOWN} module" in listing.stdout and f"n{SHOWN}1" in listing.stdout
    assert "\x1b" not in listing.stdout
    shown = run_keel("ledger", "show", "HEAD", "-w", str(ws), env=env)
    assert shown.returncode == 0, shown.stderr
    assert f"+text {SHOWN}" in shown.stdout and "\x1b" not in shown.stdout
    as_json = run_keel("ledger", "--json", "-w", str(ws), env=env)
    assert json.loads(as_json.stdout)[0]["title"] == f"Calc {CLEAR} module"


async def test_keel_status_escapes_a_stored_title(tmp_path: Path) -> None:
    """Titles are refused with control characters now; a store written before may hold one."""
    ws = tmp_path / "ws"
    entries = [
        plan(node("node-1", ["calc.py"], title="Calc")),
        bundle("node-1", 1, writes={"calc.py": "X = 1\n"}),
    ]
    await run_session(ws, entries)
    with sqlite3.connect(ws / ".keel" / "keel.db") as db:
        db.execute("UPDATE nodes SET title = ?", (f"Calc {CLEAR}\rforged line",))
    status = run_keel("status", "-w", str(ws), env=cli_env(tmp_path))
    assert status.returncode == 0, status.stderr
    assert f"Calc {SHOWN}\\rforged line" in status.stdout
    assert "\x1b" not in status.stdout and "\r" not in status.stdout


def test_the_approval_prompt_escapes_the_diff(tmp_path: Path) -> None:
    entries = [
        plan(node("node-1", ["notes.txt"], title="Notes")),
        bundle("node-1", writes={"notes.txt": f"hello {CLEAR}\x07world\n"}),
    ]
    transcript = write_transcript(tmp_path / "t.jsonl", entries)
    ws = tmp_path / "ws"
    argv = [*KEEL, "agent", "--mode", "cautious", "-w", str(ws)]
    argv += ["--model", f"replay:{transcript}", "Write the notes"]
    term = Terminal(argv, cli_env(tmp_path))
    term.expect("Approve node-1?")
    term.send("d")
    assert f"+hello {SHOWN}\\x07world" in term.expect("Approve node-1?")
    term.send("y")
    assert term.wait() == 0, term.output
    assert CLEAR not in term.output and "\x07" not in term.output
    assert (ws / "notes.txt").read_text() == f"hello {CLEAR}\x07world\n"  # the file is as written
