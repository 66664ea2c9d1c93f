"""The command line at its edges: refused configuration, read-only commands that must not
create anything, ledger rollback mistakes, and a reader that closes the pipe."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from keel.ledger import GitLedger
from tests.integration.conftest import KEEL, git, run_keel

READ_ONLY = [
    ["status"],
    ["status", "--json"],
    ["logs"],
    ["logs", "--stats"],
    ["ledger"],
    ["ledger", "--recent"],
    ["ledger", "show", "HEAD"],
    ["ledger", "rollback", "HEAD"],
    ["abort"],
    ["resume"],
    ["replay"],
]
TRAILERS = {
    "Keel-Session": "s-1",
    "Keel-Node": "node-1",
    "Keel-Bundle": "b" * 64,
    "Keel-Energy": "V=0.000",
    "Keel-Approved-By": "yolo",
}


def _one_line_error(proc: subprocess.CompletedProcess[str], starts: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith(f"keel: {starts}"), proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit of the user's and one Keel ledger entry."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "a.txt").write_text("a\n")
    git(root, "add", "a.txt")
    git(root, "commit", "-q", "-m", "user: initial")
    return root


def _ledger_entry(root: Path) -> str:
    async def commit() -> str:
        ledger = await GitLedger.open(root)
        return await ledger.commit({"b.txt": b"b\n"}, {"b.txt": None}, "keel: add b", TRAILERS)

    return asyncio.run(commit())


def test_all_zero_energy_weights_are_refused_before_anything_runs(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    flag = run_keel("agent", "-w", str(workspace), "--energy-weights", "0,0,0,0,0", "a task")
    _one_line_error(flag, "invalid configuration: engine.energy_weights")
    assert "must not all be zero" in flag.stderr
    assert not workspace.exists()  # bad flags create nothing
    env = run_keel("demo", "-w", str(workspace), "--json", env={"KEEL_ENERGY_WEIGHTS": "0,0,0,0,0"})
    _one_line_error(env, "invalid configuration: engine.energy_weights")


@pytest.mark.parametrize("command", READ_ONLY, ids=" ".join)
def test_read_only_commands_never_create_a_missing_workspace(
    tmp_path: Path, command: list[str]
) -> None:
    missing = tmp_path / "missing"
    _one_line_error(run_keel(*command, "-w", str(missing)), "no workspace at")
    assert not missing.exists()


@pytest.mark.parametrize("command", READ_ONLY, ids=" ".join)
def test_read_only_commands_never_make_a_repository_or_a_store(
    tmp_path: Path, command: list[str]
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    expected = "no Keel session in" if command[0] != "ledger" else f"{plain} is not in a git"
    _one_line_error(run_keel(*command, "-w", str(plain)), expected)
    assert list(plain.iterdir()) == []


def test_the_ledger_of_a_repository_without_a_store_is_read_as_it_is(repo: Path) -> None:
    exclude = (repo / ".git" / "info" / "exclude").read_text()
    listed = run_keel("ledger", "-w", str(repo))
    assert listed.returncode == 0 and listed.stdout == "(no ledger entries yet)\n"
    _one_line_error(run_keel("status", "-w", str(repo)), "no Keel session in")
    assert not (repo / ".keel").exists()
    assert (repo / ".git" / "info" / "exclude").read_text() == exclude


def test_rollback_of_something_else_is_bad_usage_and_twice_says_already_reverted(
    repo: Path,
) -> None:
    entry = _ledger_entry(repo)
    _one_line_error(
        run_keel("ledger", "rollback", "deadbeef", "-w", str(repo)),
        "deadbeef is not a Keel ledger entry",
    )
    _one_line_error(
        run_keel("ledger", "rollback", "HEAD~1", "-w", str(repo)), "HEAD~1 is not a Keel ledger"
    )
    first = run_keel("ledger", "rollback", entry[:10], "--json", "-w", str(repo))
    assert first.returncode == 0, first.stderr
    revert = git(repo, "rev-parse", "HEAD").strip()
    again = run_keel("ledger", "rollback", entry[:10], "-w", str(repo))
    assert again.returncode == 1
    assert (
        again.stderr == f"keel: cannot roll back {entry[:12]}: already reverted by {revert[:12]}\n"
    )
    assert git(repo, "rev-parse", "HEAD").strip() == revert


def test_a_reader_that_goes_away_ends_the_command_quietly(repo: Path) -> None:
    _ledger_entry(repo)
    # The read end is closed before keel has even started, so its first write meets EPIPE.
    proc = subprocess.Popen(
        [*KEEL, "ledger", "--json", "-w", str(repo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.close()
    _, stderr = proc.communicate(timeout=60)
    assert stderr == ""
    assert proc.returncode == 1
