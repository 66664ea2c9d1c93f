"""Bad input from the model and the environment: each gets a clear message, the session
continues or stops cleanly, and nothing is written outside the workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import (
    ScriptedApprover,
    bundle,
    git,
    json_events,
    node,
    plan,
    raw,
    run_keel,
    run_session,
)

GOOD = "def add(a: int, b: int) -> int:\n    return a + b\n"


def _evidence(sink: Any, attempt: int) -> list[dict[str, Any]]:
    checks = [
        e for e in sink.of("verification") if e["node"] == "node-1" and e["attempt"] == attempt
    ]
    return checks[0]["evidence"]


@pytest.mark.parametrize(
    ("first_reply", "expected"),
    [
        (raw("node-1", 1, "Sure! Here is the code: {not json"), "not a valid"),
        (raw("node-1", 1, '{"write": [{"path": "calc.py", "content": "x"}]}'), "write"),
        (raw("node-1", 1, '{"writes": [{"path": "calc.py"}]}'), "content"),
    ],
    ids=["malformed-json", "misspelt-key", "missing-field"],
)
async def test_invalid_reply_is_evidence_for_the_next_attempt(
    tmp_path: Path, first_reply: dict[str, Any], expected: str
) -> None:
    entries = [
        plan(node("node-1", ["calc.py"], symbols=["add"])),
        first_reply,
        bundle("node-1", 2, writes={"calc.py": GOOD}),
    ]
    result, sink = await run_session(tmp_path / "ws", entries)
    assert result.outcome == "success"
    first = _evidence(sink, 1)
    assert [e["source"] for e in first] == ["schema"]
    assert expected in first[0]["message"]


@pytest.mark.parametrize(
    "bad_path",
    [
        "../escape.py",
        "/tmp/keel-absolute-escape.py",
        ".git/hooks/pre-commit",
        ".keel/keel.db",
        "other.py",
    ],
    ids=["dotdot", "absolute", "git-dir", "keel-dir", "not-owned"],
)
async def test_paths_outside_the_node_are_refused(tmp_path: Path, bad_path: str) -> None:
    outside = tmp_path / "escape.py"
    entries = [
        plan(node("node-1", ["calc.py"])),
        bundle("node-1", 1, writes={"calc.py": GOOD, bad_path: "print('pwned')\n"}),
        bundle("node-1", 2, writes={"calc.py": GOOD}),
    ]
    result, sink = await run_session(tmp_path / "ws", entries)
    assert result.outcome == "success"
    first = _evidence(sink, 1)
    assert first and all(e["source"] == "bundle" for e in first)
    assert not outside.exists()
    assert not Path("/tmp/keel-absolute-escape.py").exists()
    assert not (tmp_path / "ws" / "other.py").exists()
    hook = tmp_path / "ws" / ".git" / "hooks" / "pre-commit"
    assert not hook.exists() or "pwned" not in hook.read_text()
    # the rejected bundle was all-or-nothing: calc.py only came from attempt 2
    assert git(tmp_path / "ws", "log", "--format=%s").splitlines() == ["keel: Node node-1"]


async def test_another_node_s_file_is_refused_and_a_new_unowned_one_adopted(
    tmp_path: Path,
) -> None:
    """With ``[engine] adopt_new_files``, a file no node owns that did not exist is adopted by
    the node writing it (docs/explanation/plan-repair.md); another node's file is refused
    all-or-nothing."""
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "keel.toml").write_text("[engine]\nadopt_new_files = true\n")
    entries = [
        plan(node("node-1", ["calc.py"]), node("node-2", ["other.py"], depends_on=["node-1"])),
        bundle("node-1", 1, writes={"calc.py": GOOD, "other.py": "print('pwned')\n"}),
        bundle("node-1", 2, writes={"calc.py": GOOD, "helper.py": "X = 1\n"}),
        bundle("node-2", 1, writes={"other.py": "Y = 2\n"}),
    ]
    result, sink = await run_session(tmp_path / "ws", entries)
    assert result.outcome == "success"
    first = _evidence(sink, 1)
    assert [e["source"] for e in first] == ["bundle"]
    assert "other.py is not owned by this node" in first[0]["message"]
    assert [(e["node"], e["path"]) for e in sink.of("file_adopted")] == [("node-1", "helper.py")]
    ws = tmp_path / "ws"
    assert git(ws, "show", "HEAD:other.py") == "Y = 2\n"
    assert git(ws, "show", "HEAD~1:helper.py") == "X = 1\n"


async def test_symlink_escaping_the_workspace_is_refused(tmp_path: Path) -> None:
    workspace, outside = tmp_path / "ws", tmp_path / "outside"
    outside.mkdir()
    (workspace / "sub").mkdir(parents=True)
    git(workspace, "init", "-q", "-b", "main")
    (workspace / "sub" / "link").symlink_to(outside, target_is_directory=True)
    git(workspace, "add", "sub/link")
    git(workspace, "commit", "-qm", "a symlink to somewhere else")
    # The plan owns the directory (inside the workspace); the bundle writes through the link.
    entries = [
        plan(node("node-1", ["sub"])),
        bundle("node-1", 1, writes={"sub/link/evil.py": "x = 1\n"}),
    ]
    result, sink = await run_session(workspace, entries, flags={"max_attempts": 1})
    assert result.outcome == "failed"
    assert "outside the workspace" in _evidence(sink, 1)[0]["message"]
    assert list(outside.iterdir()) == []
    assert sink.of("node_escalated")


async def test_a_plan_owning_a_path_through_an_escaping_symlink_is_sent_back(
    tmp_path: Path,
) -> None:
    workspace, outside = tmp_path / "ws", tmp_path / "outside"
    outside.mkdir()
    workspace.mkdir()
    git(workspace, "init", "-q", "-b", "main")
    (workspace / "link").symlink_to(outside, target_is_directory=True)
    git(workspace, "add", "link")
    git(workspace, "commit", "-qm", "a symlink to somewhere else")
    entries = [
        plan(node("node-1", ["link/evil.py"])),
        bundle("node-1", 1, writes={"link/evil.py": "x = 1\n"}),
    ]
    result, sink = await run_session(workspace, entries, flags={"max_attempts": 1})
    assert result.outcome == "failed"
    [invalid, *_] = sink.of("plan_invalid")
    assert "link/evil.py: resolves outside the workspace" in invalid["errors"][0]
    assert not sink.of("node_started")
    assert list(outside.iterdir()) == []


async def test_patch_that_does_not_apply_is_evidence(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    git(workspace, "init", "-q", "-b", "main")
    (workspace / "calc.py").write_text(GOOD)
    git(workspace, "add", ".")
    git(workspace, "commit", "-qm", "start")
    header = "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n"
    bad = header + "-def sub(a, b):\n+def sub(a: int, b: int):\n     return a - b\n"
    good = header + (
        "-def add(a: int, b: int) -> int:\n"
        "+def add(a: int, b: int) -> int:  # typed\n     return a + b\n"
    )
    entries = [
        plan(node("node-1", ["calc.py"])),
        bundle("node-1", 1, diffs={"calc.py": bad}),
        bundle("node-1", 2, diffs={"calc.py": good}),
    ]
    result, sink = await run_session(workspace, entries)
    assert result.outcome == "success"
    assert "hunk 1" in _evidence(sink, 1)[0]["message"]
    assert "# typed" in (workspace / "calc.py").read_text()


@pytest.mark.parametrize(
    ("command", "approve", "check"),
    [
        ("sleep 30", True, lambda e: e["message"] == "timed out"),
        (
            "yes | head -c 5000000; exit 3",
            True,
            lambda e: e["exit_code"] == 3 and len(e["message"]) < 70_000,
        ),
        ("python -m pytest does-not-exist", False, lambda e: e["exit_code"] == 4),
        ("rm -rf ./important", False, lambda e: "not run" in e["message"]),
    ],
    ids=["hangs", "floods-and-fails", "fails", "refused-off-allow-list"],
)
async def test_bad_commands_become_boot_evidence(
    tmp_path: Path, command: str, approve: bool, check: Any
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    # Only the hanging command needs a short timeout; the others must finish (pytest's start in
    # the sandbox, at the commands' lower priority, can take seconds on a loaded machine).
    timeout_s = 5 if command.startswith("sleep") else 120
    (workspace / "keel.toml").write_text(f"[engine]\ncommand_timeout_s = {timeout_s}\n")
    (workspace / "important").mkdir()
    entries = [
        plan(node("node-1", ["calc.py"])),
        bundle("node-1", 1, writes={"calc.py": GOOD}, commands=[command]),
    ]
    approver = ScriptedApprover(commands=approve)
    result, sink = await run_session(
        workspace, entries, approver=approver, flags={"max_attempts": 1}
    )
    assert result.outcome == "failed"
    boot = [e for e in _evidence(sink, 1) if e["source"] == "command"]
    assert len(boot) == 1 and boot[0]["command"] == command and check(boot[0]), boot
    assert (workspace / "important").is_dir()


def test_missing_api_key_is_one_clear_line(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": "", "HOME": str(tmp_path)}
    proc = run_keel(
        "agent", "-y", "--model", "openai:gpt-4.1", "-w", str(tmp_path / "ws"), "x", env=env
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "OPENAI_API_KEY" in proc.stderr


def _network_toml(workspace: Path, timeout_s: float = 30) -> None:
    workspace.mkdir()
    (workspace / "keel.toml").write_text(
        f"[network]\ntimeout_s = {timeout_s}\nmax_retries = 2\nretry_base_delay_s = 0.01\n"
    )


def test_endpoint_answering_500_then_200_recovers(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    _network_toml(workspace)
    entries = [
        plan(node("node-1", ["calc.py"], symbols=["add"])),
        bundle("node-1", 1, writes={"calc.py": GOOD}),
    ]
    with FakeModelServer(entries) as server:
        server.fail_next(1, status=500)
        env = {
            "OPENAI_API_KEY": "sk-test-key-123456",
            "OPENAI_BASE_URL": server.openai_base_url,
            "HOME": str(tmp_path),
        }
        proc = run_keel(
            "agent", "-y", "--json", "--model", "openai:gpt-4.1", "-w", str(workspace), "x", env=env
        )
        architect = [r for r in server.requests if r.headers.get("X-Keel-Tier") == "architect"]
    assert proc.returncode == 0, proc.stderr
    assert len(architect) == 2  # the 500, then the retry
    assert json_events(proc.stdout)[-1]["outcome"] == "success"


def test_endpoint_that_never_answers_stops_cleanly(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    _network_toml(workspace, timeout_s=0.5)
    with FakeModelServer([]) as server:
        server.hang_next(10)
        env = {
            "OPENAI_API_KEY": "sk-test-key-123456",
            "OPENAI_BASE_URL": server.openai_base_url,
            "HOME": str(tmp_path),
        }
        proc = run_keel(
            "agent", "-y", "--model", "openai:gpt-4.1", "-w", str(workspace), "x", env=env
        )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert server.openai_base_url.split("/v1")[0] in proc.stderr
    assert "sk-test-key-123456" not in proc.stderr + proc.stdout
