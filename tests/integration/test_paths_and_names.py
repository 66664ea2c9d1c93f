"""Paths and names the file system or a terminal cannot take, through the real engine: each
becomes V_str evidence for the next attempt (never a crash), a resume survives them, what is
verified is what is committed through symlinks, and a node owning a directory commits."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    KEEL,
    bundle,
    git,
    json_events,
    node,
    plan,
    run_keel,
    run_session,
    write_transcript,
)

GOOD = "def add(a: int, b: int) -> int:\n    return a + b\n"
LONG = "n" * 300 + ".py"  # one component over NAME_MAX (255 bytes)
DEEP = "/".join(["d" * 200] * 21) + "/x.py"  # every name fits, the whole path is over PATH_MAX


def repo(path: Path, files: dict[str, str], links: dict[str, str] | None = None) -> Path:
    """A workspace repository with the user's committed ``files`` and symlinks ``links``."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    for name, target in (links or {}).items():
        os.symlink(target, path / name)
    git(path, "add", "-A")
    git(path, "commit", "-qm", "user: initial")
    return path


def first_evidence(sink: Any, node_id: str = "node-1") -> list[dict[str, Any]]:
    checks = [e for e in sink.of("verification") if e["node"] == node_id and e["attempt"] == 1]
    return checks[0]["evidence"]


@pytest.mark.parametrize(
    ("owns", "bad_write", "files", "links", "expected"),
    [
        (["src"], {f"src/{LONG}": "x = 1\n"}, {}, {}, "over the 255-byte limit"),
        (["src"], {f"src/{DEEP}": "x = 1\n"}, {}, {}, "over the 4096-byte limit"),
        (["src"], {"src/old.py/inner.py": "x = 1\n"}, {"src/old.py": GOOD}, {}, "not a dir"),
        (["src"], {"src/ca\x1b[2Jlc.py": "x = 1\n"}, {}, {}, "control character \\x1b"),
        (["src"], {"src/Old.py": "x = 1\n"}, {"src/old.py": GOOD}, {}, "only in case"),
        (["src"], {"src/A.py": "x = 1\n", "src/a.py": "y = 1\n"}, {}, {}, "only in case"),
        (
            ["src"],
            {"src/link.py": "x = 2\n"},
            {"src/real.py": GOOD},
            {"src/link.py": "real.py"},
            "symlink",
        ),
        (["src"], {"src/ln/x.py": "x = 2\n"}, {"src/d/x.py": GOOD}, {"src/ln": "d"}, "symlink"),
    ],
    ids=[
        "name-max",
        "path-max",
        "under-a-file",
        "control-character",
        "case-vs-existing",
        "case-in-bundle",
        "through-a-file-symlink",
        "through-a-directory-symlink",
    ],
)
async def test_a_path_the_tree_cannot_hold_is_evidence_then_the_node_commits(
    tmp_path: Path,
    owns: list[str],
    bad_write: dict[str, str],
    files: dict[str, str],
    links: dict[str, str],
    expected: str,
) -> None:
    ws = repo(tmp_path / "ws", {"README.md": "# r\n", **files}, links)
    before = {p: (ws / p).read_bytes() for p in files}
    entries = [
        plan(node("node-1", owns)),
        bundle("node-1", 1, writes={"src/calc.py": GOOD, **bad_write}),
        bundle("node-1", 2, writes={"src/calc.py": GOOD}),
    ]
    result, sink = await run_session(ws, entries)
    evidence = first_evidence(sink)
    assert evidence and all(e["component"] == "str" for e in evidence), evidence
    assert any(expected in e["message"] for e in evidence), evidence
    assert result.outcome == "success", result.reason
    # attempt 1 left nothing; the linked and the existing files are as the user made them
    for path, data in before.items():
        assert (ws / path).read_bytes() == data
    committed = git(ws, "show", "--name-only", "--format=", "HEAD").split()
    assert committed == ["src/calc.py"]


async def test_a_node_owning_a_directory_becomes_stable_and_commits(tmp_path: Path) -> None:
    ws = repo(tmp_path / "ws", {"README.md": "# r\n"})
    test = "from pkg.mod import f\n\n\ndef test_f() -> None:\n    assert f() == 1\n"
    entries = [
        plan(node("node-1", ["pkg/"], symbols=["f"])),
        bundle(
            "node-1",
            1,
            writes={
                "pkg/__init__.py": "",
                "pkg/mod.py": "def f() -> int:\n    return 1\n",
                "pkg/test_mod.py": test,
            },
        ),
    ]
    result, sink = await run_session(ws, entries)
    assert result.outcome == "success", result.reason
    [check] = [e for e in sink.of("verification") if e.get("node") == "node-1"]
    assert check["stable"] and check["attempt"] == 1
    committed = git(ws, "show", "--name-only", "--format=", "HEAD").split()
    assert committed == ["pkg/__init__.py", "pkg/mod.py", "pkg/test_mod.py"]


async def test_a_directory_node_that_creates_nothing_is_not_stable(tmp_path: Path) -> None:
    ws = repo(tmp_path / "ws", {"README.md": "# r\n"})
    entries = [
        plan(node("node-1", ["pkg"])),
        bundle("node-1", 1, commands=[]),
        bundle("node-1", 2, writes={"pkg/__init__.py": "X = 1\n"}),
    ]
    result, sink = await run_session(ws, entries)
    assert any(e["message"].startswith("owned file was not created") for e in first_evidence(sink))
    assert result.outcome == "success"


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("title", "Calc \x1b[2J module", "control character \\x1b"),
        ("id", "node\n1", "control character \\n"),
        ("id", "../escape", "plain name"),
        ("id", "n" * 200, "longer than 128 bytes"),
    ],
    ids=["title-escape", "id-newline", "id-path", "id-long"],
)
async def test_a_plan_with_a_bad_id_or_title_goes_back_to_the_architect(
    tmp_path: Path, field: str, value: str, expected: str
) -> None:
    bad = node("node-1", ["calc.py"])
    bad[field] = value
    entries = [
        plan(bad),
        {**plan(node("node-1", ["calc.py"])), "attempt": 2},
        bundle("node-1", 1, writes={"calc.py": GOOD}),
    ]
    result, sink = await run_session(tmp_path / "ws", entries)
    assert result.outcome == "success", result.reason
    [invalid] = sink.of("plan_invalid")
    assert any(expected in error for error in invalid["errors"]), invalid
    assert not (tmp_path / "escape").exists()


def test_resume_after_a_kill_replays_a_bundle_with_an_impossible_path(tmp_path: Path) -> None:
    """The architect's plan and the over-long bundle are recorded, then the process dies;
    the resumed session replays them (no crash on the recorded path) and finishes."""
    ws = repo(tmp_path / "ws", {"README.md": "# r\n"})
    transcript = write_transcript(
        tmp_path / "t.jsonl",
        [
            plan(node("node-1", ["src"])),
            bundle("node-1", 1, writes={"src/calc.py": GOOD, f"src/{LONG}": "x\n"}),
            bundle("node-1", 2, writes={"src/calc.py": GOOD}),
        ],
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_") and "API_KEY" not in k}
    env["HOME"] = str(tmp_path)
    command = [*KEEL, "agent", "-y", "--json", "--model", f"replay:{transcript}", "-w", str(ws)]
    killed = subprocess.run(
        [*command, "task"],
        env={**env, "KEEL_FAULT": "model_result:2"},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = run_keel("resume", "-y", "--json", "-w", str(ws), env=env)
    assert resumed.returncode == 0, resumed.stderr
    events = json_events(resumed.stdout)
    [finished] = [e for e in events if e["type"] == "session_finished"]
    assert finished["outcome"] == "success"
    checks = [e for e in events if e["type"] == "verification" and e.get("attempt") == 1]
    assert any("255-byte" in item["message"] for item in checks[0]["evidence"])
    assert git(ws, "show", "--name-only", "--format=", "HEAD").split() == ["src/calc.py"]


async def test_a_name_just_under_name_max_is_written_verified_and_committed(
    tmp_path: Path,
) -> None:
    """Temporary files beside such a name would pass NAME_MAX; they must not make it fail."""
    name = "src/" + "n" * 252 + ".py"  # 255 bytes
    ws = repo(tmp_path / "ws", {"README.md": "# r\n"})
    entries = [plan(node("node-1", ["src"])), bundle("node-1", 1, writes={name: "X = 1\n"})]
    result, _ = await run_session(ws, entries)
    assert result.outcome == "success", result.reason
    assert git(ws, "show", f"HEAD:{name}") == "X = 1\n"
    assert sorted(p.name for p in (ws / "src").iterdir()) == [name.removeprefix("src/")]


async def test_context_paths_the_tree_cannot_hold_are_refused_or_read_as_absent(
    tmp_path: Path,
) -> None:
    """``context`` paths are checked like owned ones: names no file system can hold (over
    NAME_MAX, a NUL) send the plan back to the architect, never a crash; a path under an
    existing file is valid to name and is read as absent."""
    ws = repo(tmp_path / "ws", {"README.md": "# r\n"})
    reader = node("node-1", ["calc.py"])
    reader["context"] = ["c" * 300 + ".md", "a\x00b"]
    fixed = node("node-1", ["calc.py"])
    fixed["context"] = ["README.md/inner.md"]
    entries = [
        plan(reader),
        {**plan(fixed), "attempt": 2},
        bundle("node-1", 1, writes={"calc.py": GOOD}),
    ]
    result, _ = await run_session(ws, entries)
    assert result.outcome == "success", result.reason
