"""The command runner against real processes: exit codes, timeouts, floods, the scrubbed env."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from keel.engine.ports import CommandRunner
from keel.process import (
    NOT_EXECUTABLE_EXIT_CODE,
    NOT_FOUND_EXIT_CODE,
    TIMEOUT_EXIT_CODE,
    SubprocessRunner,
    ToolRunner,
    scrubbed_env,
)


def _is_gone(pid: int, within_s: float = 5.0) -> bool:
    """True when ``pid`` stops running (exits, or is a zombie nobody reaped) within ``within_s``.

    SIGKILL is delivered asynchronously: on a loaded machine the victim takes a moment to die.
    """
    deadline = time.monotonic() + within_s
    while not _stopped(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _stopped(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_the_runner_implements_the_ports() -> None:
    runner = SubprocessRunner()
    port: CommandRunner = runner
    tools: ToolRunner = runner
    assert port is tools


async def test_a_command_returns_its_output_and_exit_code(tmp_path: Path) -> None:
    result = await SubprocessRunner().run("echo out; echo err >&2; exit 3", tmp_path, timeout_s=10)
    assert result.exit_code == 3
    assert not result.ok and not result.timed_out and not result.truncated
    assert "out" in result.output and "err" in result.output  # stderr merged
    assert result.command == "echo out; echo err >&2; exit 3"


async def test_a_command_runs_in_its_directory_with_stdin_closed(tmp_path: Path) -> None:
    (tmp_path / "here.txt").write_text("x")
    result = await SubprocessRunner().run("ls; cat", tmp_path, timeout_s=10)
    assert result.ok
    assert "here.txt" in result.output


async def test_a_timeout_kills_the_whole_process_group_quickly(tmp_path: Path) -> None:
    runner = SubprocessRunner(kill_grace_s=1.0)
    started = time.monotonic()
    result = await runner.run("sleep 30 & echo $! > child.pid; sleep 30", tmp_path, timeout_s=0.5)
    elapsed = time.monotonic() - started
    assert result.timed_out
    assert result.exit_code == TIMEOUT_EXIT_CODE
    assert "timed out" in result.output
    assert elapsed < 5
    child = int((tmp_path / "child.pid").read_text())
    assert _is_gone(child), "the background child survived the timeout"


async def test_background_leftovers_do_not_hold_the_runner(tmp_path: Path) -> None:
    started = time.monotonic()
    result = await SubprocessRunner().run("sleep 30 & echo started", tmp_path, timeout_s=20)
    assert result.ok and "started" in result.output
    assert time.monotonic() - started < 5


async def test_an_output_flood_is_capped_and_drained(tmp_path: Path) -> None:
    runner = SubprocessRunner(output_cap_bytes=64 * 1024)
    started = time.monotonic()
    result = await runner.run("yes | head -c 10000000", tmp_path, timeout_s=30)
    assert result.exit_code == 0
    assert result.truncated
    assert len(result.output) < 70 * 1024
    assert f"[... {10_000_000 - 64 * 1024} bytes truncated]" in result.output
    assert time.monotonic() - started < 10


async def test_a_small_output_is_not_marked_truncated(tmp_path: Path) -> None:
    result = await SubprocessRunner(output_cap_bytes=10).run(
        "printf 0123456789", tmp_path, timeout_s=5
    )
    assert result.output == "0123456789" and not result.truncated


async def test_the_environment_is_scrubbed(tmp_path: Path) -> None:
    base = {
        "PATH": os.environ["PATH"],
        "HOME": "/home/someone",
        "OPENAI_API_KEY": "sk-secret",
        "ANTHROPIC_API_KEY": "secret-too",
        "PYTHONPATH": "/somewhere",
    }
    runner = SubprocessRunner(base_env=base, extra_env={"KEEL_SANDBOX": "1"})
    result = await runner.run("env", tmp_path, timeout_s=10)
    assert "sk-secret" not in result.output and "OPENAI_API_KEY" not in result.output
    assert "ANTHROPIC_API_KEY" not in result.output
    assert "PYTHONPATH" not in result.output
    assert "HOME=/home/someone" in result.output
    assert "PYTHONDONTWRITEBYTECODE=1" in result.output
    assert "PIP_NO_INPUT=1" in result.output
    assert "KEEL_SANDBOX=1" in result.output


def test_scrubbed_env_keeps_only_the_allow_list() -> None:
    env = scrubbed_env({"PATH": "/bin", "GITHUB_TOKEN": "t", "LANG": "C.UTF-8"}, {"X": "1"})
    assert env == {
        "PATH": "/bin",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PIP_NO_INPUT": "1",
        "X": "1",
    }


async def test_run_argv_uses_no_shell_and_layers_env(tmp_path: Path) -> None:
    runner = SubprocessRunner()
    result = await runner.run_argv(
        ["sh", "-c", 'printf "%s|%s" "$1" "$KEEL_X"', "sh", "$HOME; rm -rf x"],
        tmp_path,
        timeout_s=5,
        env={"KEEL_X": "y"},
    )
    assert result.output == "$HOME; rm -rf x|y"


async def test_run_argv_with_a_missing_executable_returns_127(tmp_path: Path) -> None:
    result = await SubprocessRunner().run_argv(["keel-no-such-tool", "--x"], tmp_path, timeout_s=5)
    assert result.exit_code == NOT_FOUND_EXIT_CODE
    assert "command not found" in result.output


async def test_a_missing_command_through_the_shell_is_127(tmp_path: Path) -> None:
    result = await SubprocessRunner().run("keel-no-such-tool", tmp_path, timeout_s=5)
    assert result.exit_code == NOT_FOUND_EXIT_CODE


async def test_a_missing_working_directory_is_reported_not_raised(tmp_path: Path) -> None:
    result = await SubprocessRunner().run("true", tmp_path / "nope", timeout_s=5)
    assert result.exit_code == NOT_EXECUTABLE_EXIT_CODE
    assert "does not exist" in result.output


async def test_a_signal_death_is_128_plus_the_signal(tmp_path: Path) -> None:
    result = await SubprocessRunner().run("kill -9 $$", tmp_path, timeout_s=5)
    assert result.exit_code == 128 + 9


def test_a_non_positive_cap_is_refused() -> None:
    with pytest.raises(ValueError):
        SubprocessRunner(output_cap_bytes=0)


async def test_cancelling_the_caller_kills_the_command(tmp_path: Path) -> None:
    runner = SubprocessRunner(kill_grace_s=1.0)
    task = asyncio.create_task(
        runner.run("sleep 30 & echo $! > child.pid; sleep 30", tmp_path, timeout_s=60)
    )
    pid_file = tmp_path / "child.pid"
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _is_gone(int(pid_file.read_text()))
