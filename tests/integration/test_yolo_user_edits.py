"""In ``yolo`` mode nobody reviews a bundle, and a user edit still is never overwritten.

The user edits a file the node owns while its bundle is being verified (the edit happens
on the ``bundle_generated`` event, after the bundle's base was read and before the ledger
writes). The approval by policy meets the same check as a reviewer's: the file on disk is
compared with the base the bundle was made from at the moment of writing, and the bundle is
re-based onto the edit (a clean merge, verified again) or regenerated on top of it.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

from keel.engine.events import BundleGenerated, Event
from tests.integration.conftest import (
    GIT_ENV,
    KEEL,
    RecordingSink,
    bundle,
    git,
    json_events,
    node,
    plan,
    run_session,
    write_transcript,
)

BASE = "def add(a, b):\n    return a + b\n\n\n\n\ndef sub(a, b):\n    return a - b\n"
USER = BASE.replace("return a + b", "return a + b  # the user's edit")
CONFLICTING = BASE.replace("return a + b", "return b + a")


class EditOnVerify(RecordingSink):
    """Writes ``content`` to ``path`` when the node's first bundle is generated."""

    def __init__(self, path: Path, content: str) -> None:
        super().__init__()
        self._path, self._content, self.edited = path, content, False

    def emit(self, event: Event) -> None:
        super().emit(event)
        if isinstance(event, BundleGenerated) and not self.edited:
            self._path.write_text(self._content)
            self.edited = True


def _repo(workspace: Path) -> None:
    workspace.mkdir()
    git(workspace, "init", "-q", "-b", "main")
    (workspace / "calc.py").write_text(BASE)
    git(workspace, "add", ".")
    git(workspace, "commit", "-qm", "calc")


async def test_yolo_merges_a_bundle_onto_an_edit_made_during_verification(
    tmp_path: Path,
) -> None:
    workspace = tmp_path / "ws"
    _repo(workspace)
    proposed = BASE.replace("return a - b", "return a - b  # from the model")
    entries = [
        plan(node("node-1", ["calc.py"], symbols=["add", "sub"])),
        bundle("node-1", writes={"calc.py": proposed}),
    ]
    sink = EditOnVerify(workspace / "calc.py", USER)
    result, _ = await run_session(
        workspace, entries, flags={"mode": "yolo"}, auto_approve=False, sink=sink
    )
    assert sink.edited and result.outcome == "success", sink.events[-1]
    expected = USER.replace("return a - b", "return a - b  # from the model")
    assert (workspace / "calc.py").read_text() == expected
    assert git(workspace, "show", "HEAD:calc.py") == expected
    assert sink.of("bundle_rebased")[0]["files"] == ["calc.py"]


async def test_yolo_regenerates_instead_of_overwriting_a_conflicting_edit(
    tmp_path: Path,
) -> None:
    workspace = tmp_path / "ws"
    _repo(workspace)
    entries = [
        plan(node("node-1", ["calc.py"], symbols=["add", "sub"])),
        bundle("node-1", writes={"calc.py": CONFLICTING}),
        bundle("node-1", 2, writes={"calc.py": USER + "\n\ndef mul(a, b):\n    return a * b\n"}),
    ]
    sink = EditOnVerify(workspace / "calc.py", USER)
    result, _ = await run_session(
        workspace,
        entries,
        flags={"mode": "yolo", "max_attempts": 2},
        auto_approve=False,
        sink=sink,
    )
    assert sink.edited
    assert sink.of("bundle_rebased")[0]["conflicts"] == ["calc.py"]
    text = (workspace / "calc.py").read_text()
    assert "# the user's edit" in text and "return b + a" not in text, text
    assert result.outcome == "success", sink.events[-1]


HOLD_TEST = """import os


def test_held_until_the_user_edited():
    if os.path.exists({done!r}):
        return
    with open({start!r}, "w") as start:
        start.write("verifying\\n")
    with open({release!r}) as release:
        release.read()
"""


def test_keel_agent_in_yolo_keeps_an_edit_made_while_verification_is_held(
    tmp_path: Path,
) -> None:
    """The real ``keel agent --mode yolo``: its pytest run waits on a FIFO while the user edits.

    The sandbox hides HOME and /tmp and binds the rest read-only, so the FIFOs live in a folder
    the user's config lends it (``[sandbox] readonly_paths``); a FIFO opens for writing on a
    read-only mount, and ``done``, made by this test, tells later runs not to wait.
    """
    workspace = tmp_path / "ws"
    _repo(workspace)
    holds, home = tmp_path / "hold", tmp_path / "home"
    holds.mkdir()
    (home / ".config" / "keel").mkdir(parents=True)
    (home / ".config" / "keel" / "config.toml").write_text(
        f"[sandbox]\nreadonly_paths = [{str(holds)!r}]\n"
    )
    start, release, done = holds / "start", holds / "release", holds / "done"
    os.mkfifo(start)
    os.mkfifo(release)
    proposed = BASE.replace("return a - b", "return a - b  # from the model")
    hold = HOLD_TEST.format(start=str(start), release=str(release), done=str(done))
    transcript = write_transcript(
        tmp_path / "t.jsonl",
        [
            plan(node("node-1", ["calc.py", "test_calc.py"], symbols=["add", "sub"])),
            bundle("node-1", writes={"calc.py": proposed, "test_calc.py": hold}),
        ],
    )
    env = {**os.environ, **GIT_ENV, "HOME": str(home)}
    command = [*KEEL, "agent", "--mode", "yolo", "--json", "--model", f"replay:{transcript}"]
    process = subprocess.Popen(
        [*command, "-w", str(workspace), "task"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    held = threading.Event()

    def wait_for_verification() -> None:
        with open(start) as fifo:
            fifo.read()
        held.set()

    waiter = threading.Thread(target=wait_for_verification, daemon=True)
    waiter.start()
    waiter.join(timeout=240)
    assert held.is_set(), process.stderr.read() if process.poll() is not None else "no pytest"
    (workspace / "calc.py").write_text(USER)  # the user's edit, while pytest is held
    done.touch()
    with open(release, "w") as fifo:
        fifo.write("go\n")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    events = json_events(out)
    assert events[-1]["outcome"] == "success", events[-1]
    assert [e["files"] for e in events if e["type"] == "bundle_rebased"] == [["calc.py"]]
    expected = USER.replace("return a - b", "return a - b  # from the model")
    assert (workspace / "calc.py").read_text() == expected
    assert git(workspace, "show", "HEAD:calc.py") == expected
