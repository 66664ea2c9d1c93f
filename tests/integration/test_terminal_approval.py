"""Interactive approval through a real pseudo-terminal (stdlib ``pty``): ``keel agent`` without
``-y`` asks on its terminal, and each answer does what it says: ``d`` shows the diff, ``e``
opens ``$EDITOR`` on the proposed files and the edited bundle is verified and proposed again
(no model call), ``n`` rejects with a reason and ``c`` corrects, both heard by the model's next
attempt (read back from the prompts stored with ``--log-llm``), ``y`` commits."""

from __future__ import annotations

import os
import pty
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.integration.conftest import KEEL, bundle, git, node, plan, write_transcript

EDITOR_SCRIPT = """\
import sys
for path in sys.argv[1:]:
    with open(path, "w") as fh:
        fh.write("edited by the reviewer\\n")
"""


class Terminal:
    """The controlling side of a pseudo-terminal running one process."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: becomes the keel process, the pty is its terminal
            os.execvpe(argv[0], list(argv), dict(env))
        self.pid, self.fd = pid, fd
        self.output = ""
        self._seen = 0

    def expect(self, text: str, timeout: float = 60) -> str:
        """Wait until ``text`` appears after what was already matched; returns the output
        in between. Data arriving on the terminal is the event waited on."""
        deadline = time.monotonic() + timeout
        while text not in self.output[self._seen :]:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {text!r}; got:\n{self.output[self._seen :]}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready and not self._read():
                raise AssertionError(f"the process ended before {text!r}:\n{self.output}")
        end = self.output.index(text, self._seen) + len(text)
        between, self._seen = self.output[self._seen : end], end
        return between

    def send(self, line: str) -> None:
        os.write(self.fd, (line + "\n").encode())

    def wait(self) -> int:
        while self._read():
            pass
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)

    def _read(self) -> bool:
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.output += data.decode(errors="replace")
        return bool(data)


def _start(tmp_path: Path, entries: list[dict[str, Any]], **env: str) -> tuple[Terminal, Path]:
    workspace = tmp_path / "ws"
    transcript = write_transcript(tmp_path / "transcript.jsonl", entries)
    argv = [*KEEL, "agent", "--mode", "cautious", "--log-llm", "-w", str(workspace)]
    argv += ["--model", f"replay:{transcript}", "Write the notes"]
    base = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    full_env = {**base, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / ".c"), **env}
    return Terminal(argv, full_env), workspace


def _calls(workspace: Path) -> list[tuple[str, int, str]]:
    with sqlite3.connect(workspace / ".keel" / "keel.db") as db:
        rows = db.execute(
            "SELECT tier, attempt, prompt FROM model_calls WHERE tier = 'actuator' ORDER BY id"
        ).fetchall()
    return [(str(t), int(a), str(p)) for t, a, p in rows]


def test_diff_then_edit_in_the_editor_then_approve(tmp_path: Path) -> None:
    editor = tmp_path / "editor.py"
    editor.write_text(EDITOR_SCRIPT)
    entries = [
        plan(node("node-1", ["notes.txt"], title="Notes")),
        bundle("node-1", writes={"notes.txt": "first draft\n"}),
    ]
    term, workspace = _start(tmp_path, entries, EDITOR=f"{sys.executable} {editor}", VISUAL="")
    term.expect("Approve node-1?")
    term.send("d")
    assert "+first draft" in term.expect("Approve node-1?")
    term.send("e")
    shown = term.expect("Approve node-1?")  # the edited bundle, verified again
    assert "Edited notes.txt; verifying again." in shown
    term.send("d")
    assert "+edited by the reviewer" in term.expect("Approve node-1?")
    term.send("y")
    assert term.wait() == 0, term.output
    assert (workspace / "notes.txt").read_text() == "edited by the reviewer\n"
    assert git(workspace, "show", "HEAD:notes.txt") == "edited by the reviewer\n"
    assert git(workspace, "log", "-1", "--format=%(trailers:key=Keel-Approved-By)").strip() == (
        "Keel-Approved-By: user"
    )
    assert [attempt for _, attempt, _ in _calls(workspace)] == [1]  # no second model call


def test_reject_with_a_reason_then_correct_then_approve(tmp_path: Path) -> None:
    analysis = {"verdict": "unstable", "analysis": "the reviewer objected", "fix_hints": []}
    entries = [
        plan(node("node-1", ["notes.txt"], title="Notes")),
        bundle("node-1", 1, writes={"notes.txt": "v1\n"}),
        {"tier": "verifier", "node": "node-1", "attempt": 1, "reply": analysis},
        bundle("node-1", 2, writes={"notes.txt": "v2\n"}),
        {"tier": "verifier", "node": "node-1", "attempt": 2, "reply": analysis},
        bundle("node-1", 3, writes={"notes.txt": "v3\n"}),
    ]
    term, workspace = _start(tmp_path, entries)
    term.expect("Approve node-1?")
    term.send("n")
    term.expect("Reason (sent to the model, optional): ")
    term.send("far too terse")
    term.expect("Approve node-1?")
    term.send("x")  # an unknown key shows the keys and asks again
    assert "correct: your instructions are sent to the model" in term.expect("Approve node-1?")
    term.send("c")
    term.expect("Correction for the model: ")
    term.send("write it in British spelling")
    term.expect("Approve node-1?")
    term.send("y")
    assert term.wait() == 0, term.output
    assert (workspace / "notes.txt").read_text() == "v3\n"
    calls = _calls(workspace)
    assert [attempt for _, attempt, _ in calls] == [1, 2, 3]
    assert "far too terse" not in calls[0][2]
    assert "far too terse" in calls[1][2]
    assert "write it in British spelling" in calls[2][2]
    with sqlite3.connect(workspace / ".keel" / "keel.db") as db:
        notes = db.execute("SELECT decision, note FROM approvals ORDER BY id").fetchall()
    assert notes[:2] == [
        ("rejected", "far too terse"),
        ("rejected", "write it in British spelling"),
    ]
    assert notes[2][0] == "approved"


def test_end_of_input_leaves_the_node_awaiting_approval(tmp_path: Path) -> None:
    entries = [
        plan(node("node-1", ["notes.txt"], title="Notes")),
        bundle("node-1", writes={"notes.txt": "draft\n"}),
    ]
    term, workspace = _start(tmp_path, entries)
    term.expect("Approve node-1?")
    os.write(term.fd, b"\x04")  # Ctrl-D: end of input on a terminal
    assert term.wait() == 1, term.output
    assert "awaiting_approval" in term.output
    assert not (workspace / "notes.txt").exists()


def test_an_approval_killed_before_its_commit_is_honoured_on_resume(tmp_path: Path) -> None:
    """The decision is a durable intent: typed ``y``, then a kill before the ledger commit, and
    ``keel resume`` (no terminal, no ``-y``: nobody could approve) commits it as the user's."""
    entries = [
        plan(node("node-1", ["notes.txt"], title="Notes")),
        bundle("node-1", writes={"notes.txt": "approved\n"}),
    ]
    term, workspace = _start(tmp_path, entries, KEEL_FAULT="ledger_before_commit")
    term.expect("Approve node-1?")
    term.send("y")
    assert term.wait() == -signal.SIGKILL, term.output
    no_head = subprocess.run(["git", "-C", str(workspace), "rev-parse", "-q", "--verify", "HEAD"])
    assert no_head.returncode != 0  # killed before the commit: the repository has none yet
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    resumed = subprocess.run(
        [*KEEL, "resume", "--last", "-w", str(workspace)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**env, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / ".c")},
        timeout=120,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "awaiting approval" not in resumed.stdout
    assert git(workspace, "show", "HEAD:notes.txt") == "approved\n"
    trailer = git(workspace, "log", "-1", "--format=%(trailers:key=Keel-Approved-By,valueonly)")
    assert trailer.strip() == "user"
    sha = git(workspace, "rev-parse", "HEAD").strip()
    with sqlite3.connect(workspace / ".keel" / "keel.db") as db:
        rows = db.execute("SELECT decision, actor, ledger_sha FROM approvals").fetchall()
    assert rows == [("approved", "user", sha)]  # the intent, completed; not asked twice
