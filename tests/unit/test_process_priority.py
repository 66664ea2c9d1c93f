"""Verification commands yield the CPU to Keel: they run niced, and their starts are staggered.

Issue 16: while eight nodes verify, the language server must stay first in line for the CPU.
The niceness is read back from the real children (``os.nice(0)`` in the child, its own child,
and inside bubblewrap); the stagger is checked by the order of events under a fake clock,
never by timing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from keel.app import command_runner
from keel.config import load_config
from keel.engine.ports import ConfigError
from keel.process import (
    AUTOGROUP_SHIM,
    DEFAULT_NICENESS,
    NOT_FOUND_EXIT_CODE,
    StartGate,
    SubprocessRunner,
    autogroup_prefix,
    nice_prefix,
)
from keel.sandbox import SandboxOptions, open_sandbox

PRINT_NICE = "import os; print(os.nice(0))"
OWN = os.nice(0)


def expected(niceness: int) -> int:
    return min(OWN + niceness, 19)


async def child_niceness(runner: SubprocessRunner, cwd: Path) -> int:
    result = await runner.run_argv([sys.executable, "-c", PRINT_NICE], cwd, timeout_s=30)
    assert result.exit_code == 0, result.output
    return int(result.output.strip())


async def test_a_command_runs_at_a_lower_priority_than_keel(tmp_path: Path) -> None:
    assert await child_niceness(SubprocessRunner(niceness=7), tmp_path) == expected(7)


async def test_the_default_priority_is_lower(tmp_path: Path) -> None:
    assert DEFAULT_NICENESS > 0
    assert await child_niceness(SubprocessRunner(), tmp_path) == expected(DEFAULT_NICENESS)


async def test_what_a_command_spawns_inherits_the_lower_priority(tmp_path: Path) -> None:
    runner = SubprocessRunner(niceness=5)
    result = await runner.run(f'{sys.executable} -c "{PRINT_NICE}"', tmp_path, timeout_s=30)
    assert result.exit_code == 0, result.output
    assert int(result.output.strip()) == expected(5)


async def test_niceness_zero_runs_at_keels_own_priority(tmp_path: Path) -> None:
    runner = SubprocessRunner(niceness=0)
    assert runner.confine(["true"], tmp_path, {}) == ["true"]
    assert await child_niceness(runner, tmp_path) == OWN


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
async def test_a_sandboxed_command_and_the_checker_server_are_niced(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    (workspace / ".git").mkdir(parents=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    sandbox = open_sandbox("auto", workspace, SandboxOptions(), env)
    runner = SubprocessRunner(base_env=env, sandbox=sandbox, niceness=6)
    assert await child_niceness(runner, workspace) == expected(6)
    # The plugins start the checker's language server themselves, through confine():
    argv = runner.confine(["ty", "server"], workspace, runner.environment())
    assert argv[:3] == nice_prefix(6) and "bwrap" in Path(argv[3]).name


async def test_a_missing_program_is_still_reported_as_not_found(tmp_path: Path) -> None:
    result = await SubprocessRunner(niceness=3).run_argv(
        ["keel-no-such-tool"], tmp_path, timeout_s=5
    )
    assert result.exit_code == NOT_FOUND_EXIT_CODE
    assert result.output == "keel-no-such-tool: command not found"


async def test_a_commands_own_127_is_not_rewritten(tmp_path: Path) -> None:
    result = await SubprocessRunner(niceness=3).run(
        "echo 'nice: x'; exit 127", tmp_path, timeout_s=5
    )
    assert result.exit_code == NOT_FOUND_EXIT_CODE
    assert result.output == "nice: x\n"


@pytest.mark.parametrize("bad", [-1, 20])
def test_an_impossible_niceness_is_refused(bad: int) -> None:
    with pytest.raises(ValueError, match="niceness"):
        SubprocessRunner(niceness=bad)


class FakeClock:
    """Time moves only when the gate sleeps; every start is noted at the time it began."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def test_eight_nodes_starting_together_start_one_at_a_time(tmp_path: Path) -> None:
    clock = FakeClock()
    gate = StartGate(0.05, clock=clock, sleep=clock.sleep)
    runner = SubprocessRunner(niceness=0, start_gate=gate)
    started: list[float] = []
    spawn = runner._spawn

    async def noting(*args: object, **kwargs: object) -> asyncio.subprocess.Process:
        process = await spawn(*args, **kwargs)  # type: ignore[arg-type]
        started.append(clock.now)
        return process

    runner._spawn = noting  # type: ignore[method-assign]
    results = await asyncio.gather(
        *(runner.run_argv(["true"], tmp_path, timeout_s=30) for _ in range(8))
    )
    assert [r.exit_code for r in results] == [0] * 8
    assert gate.starts == 8
    # No two in the same tick: each start waited for the one before and for the interval.
    assert started == [pytest.approx(100.0 + 0.05 * n) for n in range(8)]
    assert clock.sleeps == [pytest.approx(0.05)] * 7


async def test_the_gate_spreads_starts_but_commands_still_run_side_by_side(
    tmp_path: Path,
) -> None:
    """Each command waits until all three have started: a gate held for a command's whole run
    would deadlock here (and time out)."""
    runner = SubprocessRunner(niceness=0, start_gate=StartGate(0.001))
    script = (
        "import pathlib, sys, time\n"
        "here = pathlib.Path(sys.argv[1])\n"
        "(here / sys.argv[2]).touch()\n"
        "deadline = time.monotonic() + 20\n"
        "while len(list(here.glob('m*'))) < 3 and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "print(len(list(here.glob('m*'))))\n"
    )
    results = await asyncio.gather(
        *(
            runner.run_argv(
                [sys.executable, "-c", script, str(tmp_path), f"m{n}"], tmp_path, timeout_s=30
            )
            for n in range(3)
        )
    )
    assert [r.output.strip() for r in results] == ["3", "3", "3"]


async def test_a_cancelled_start_releases_the_gate(tmp_path: Path) -> None:
    gate = StartGate(0)
    runner = SubprocessRunner(niceness=0, start_gate=gate)
    async with gate.slot():  # another start holds the gate
        waiting = asyncio.create_task(runner.run_argv(["true"], tmp_path, timeout_s=30))
        await asyncio.sleep(0)
        waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    result = await runner.run_argv(["true"], tmp_path, timeout_s=30)
    assert result.exit_code == 0


def test_a_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        StartGate(-0.1)


def test_the_session_runner_takes_commands_from_config(tmp_path: Path) -> None:
    (tmp_path / "keel.toml").write_text("[commands]\nniceness = 4\nstart_interval_ms = 75\n")
    config = load_config(tmp_path, env={})
    runner = command_runner({"PATH": "/usr/bin"}, config=config)
    assert runner.niceness == 4
    assert runner.start_gate.interval_s == pytest.approx(0.075)


@pytest.mark.parametrize(
    "body", ["niceness = 20", "niceness = -1", "start_interval_ms = -5", "nice = 3"]
)
def test_bad_commands_config_is_a_clear_error(tmp_path: Path, body: str) -> None:
    (tmp_path / "keel.toml").write_text(f"[commands]\n{body}\n")
    with pytest.raises(ConfigError, match="commands"):
        load_config(tmp_path, env={})


async def test_a_commands_own_127_naming_a_missing_program_is_not_rewritten(
    tmp_path: Path,
) -> None:
    """Even a line that looks like nice's own, from a program that exists, stays as it is."""
    runner = SubprocessRunner(niceness=3)
    line = "nice: 'ghost': No such file or directory"
    result = await runner.run(f'echo "{line}"; exit 127', tmp_path, timeout_s=5)
    assert (result.exit_code, result.output) == (NOT_FOUND_EXIT_CODE, line + "\n")


async def test_a_file_that_is_not_executable_cannot_execute(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    result = await SubprocessRunner(niceness=3).run_argv([str(script)], tmp_path, timeout_s=5)
    assert result.exit_code == 126
    assert result.output.startswith(f"{script}: cannot execute: ")


def test_keels_own_probes_run_at_its_own_priority() -> None:
    """The project's interpreter is probed on the way to the first model call: not niced."""
    config = load_config(Path("/nonexistent-keel-ws"), env={})
    assert command_runner({"PATH": "/usr/bin"}, config=config).niceness == 10
    assert command_runner({"PATH": "/usr/bin"}, config=config, verification=False).niceness == 0


# -- autogroups: with the kernel's sched_autogroup on, a new session is scheduled as a group of
# its own, and only the group's niceness counts against keel serve's.

AUTOGROUPS_ON = Path("/proc/sys/kernel/sched_autogroup_enabled")
# The group's niceness is set just after the command starts (the kernel rate-limits it): the
# command waits, bounded, for it to land and prints what it sees.
PRINT_GROUP = (
    "import sys, time\n"
    "want, end = sys.argv[1], time.monotonic() + 20\n"
    "while True:\n"
    "    seen = open('/proc/self/autogroup').read().split()[-1]\n"
    "    if seen == want or time.monotonic() > end:\n"
    "        break\n"
    "    time.sleep(0.02)\n"
    "print(seen)\n"
)


def autogroups_on() -> bool:
    try:
        return AUTOGROUPS_ON.read_text().strip() == "1"
    except OSError:
        return False


def own_group() -> str:
    return Path("/proc/self/autogroup").read_text()


# Whether this kernel lets a command in a session of its own lower its group at all, asked
# without Keel's shim: retried as the shim retries, for longer; the last error if it never does.
CAN_LOWER_OWN_GROUP = (
    "import os, time\n"
    "end, error = time.monotonic() + 10, ''\n"
    "while time.monotonic() < end:\n"
    "    try:\n"
    "        with open('/proc/self/autogroup', 'w') as group:\n"
    "            group.write('1')\n"
    "        print('yes')\n"
    "        break\n"
    "    except OSError as failure:\n"
    "        error = str(failure)\n"
    "        time.sleep(0.05)\n"
    "else:\n"
    "    print(error)\n"
)


async def skip_unless_the_kernel_lets_sessions_lower_their_group(
    runner: SubprocessRunner, cwd: Path
) -> None:
    """Where the kernel refuses (an LSM, or another writer holding its machine-wide rate
    limit), the shim cannot do its work and the command runs at its own nice: not Keel's bug."""
    result = await runner.run_argv([sys.executable, "-c", CAN_LOWER_OWN_GROUP], cwd, timeout_s=30)
    if result.output.strip() != "yes":
        pytest.skip(f"this kernel does not let a session lower its group: {result.output!r}")


def test_the_shim_is_only_added_where_autogroups_are_on(tmp_path: Path) -> None:
    on, off, group = tmp_path / "on", tmp_path / "off", tmp_path / "group"
    on.write_text("1\n")
    off.write_text("0\n")
    group.write_text("/autogroup-42 nice 0\n")
    assert autogroup_prefix(10, on, group)[-1] == AUTOGROUP_SHIM
    assert "/autogroup-42" in autogroup_prefix(10, on, group)[2]  # Keel's own, left alone
    assert autogroup_prefix(10, off, group) == []
    assert autogroup_prefix(10, tmp_path / "missing", group) == []  # no autogroups here
    assert autogroup_prefix(10, on, tmp_path / "missing") == []
    assert autogroup_prefix(0, on, group) == []  # Keel's own priority: nothing to lower
    root = tmp_path / "root"
    root.write_text("")  # Keel in the kernel's root group: its file is empty
    assert autogroup_prefix(10, on, root)[-1] == AUTOGROUP_SHIM
    group.write_text("garbage\n")
    assert autogroup_prefix(10, on, group) == []


@pytest.mark.skipif(not autogroups_on(), reason="the kernel does not group by session")
async def test_a_keel_in_the_root_group_still_lowers_its_commands_sessions(tmp_path: Path) -> None:
    """Started by an init that makes no session (CI machines are), Keel is in the kernel's root
    group and reads an empty ``/proc/self/autogroup``: its commands' sessions are lowered all
    the same. CI failed here when an empty file turned the shim off."""
    await skip_unless_the_kernel_lets_sessions_lower_their_group(
        SubprocessRunner(niceness=0), tmp_path
    )
    root = tmp_path / "root-group"
    root.write_text("")
    runner = SubprocessRunner(niceness=8)
    runner._autogroup = autogroup_prefix(8, AUTOGROUPS_ON, root)
    before = own_group()
    result = await runner.run_argv([sys.executable, "-c", PRINT_GROUP, "8"], tmp_path, timeout_s=30)
    assert (result.exit_code, result.output.strip()) == (0, "8"), result.output
    assert own_group() == before


@pytest.mark.skipif(not autogroups_on(), reason="the kernel does not group by session")
async def test_a_commands_session_is_as_nice_as_the_command(tmp_path: Path) -> None:
    await skip_unless_the_kernel_lets_sessions_lower_their_group(
        SubprocessRunner(niceness=0), tmp_path
    )
    before = own_group()
    result = await SubprocessRunner(niceness=7).run_argv(
        [sys.executable, "-c", PRINT_GROUP, "7"], tmp_path, timeout_s=30
    )
    assert (result.exit_code, result.output.strip()) == (0, "7"), result.output
    assert own_group() == before  # Keel's own group is never touched


@pytest.mark.skipif(not autogroups_on(), reason="the kernel does not group by session")
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
async def test_a_sandboxed_commands_session_is_as_nice_as_the_command(tmp_path: Path) -> None:
    """bubblewrap's ``--new-session`` makes a second session inside: the shim runs there."""
    workspace = tmp_path / "ws"
    (workspace / ".git").mkdir(parents=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    sandbox = open_sandbox("auto", workspace, SandboxOptions(), env)
    await skip_unless_the_kernel_lets_sessions_lower_their_group(
        SubprocessRunner(base_env=env, sandbox=sandbox, niceness=0), workspace
    )
    before = own_group()
    runner = SubprocessRunner(base_env=env, sandbox=sandbox, niceness=6)
    result = await runner.run_argv(
        [sys.executable, "-c", PRINT_GROUP, "6"], workspace, timeout_s=30
    )
    assert (result.exit_code, result.output.strip()) == (0, "6"), result.output
    assert own_group() == before


@pytest.mark.skipif(not autogroups_on(), reason="the kernel does not group by session")
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
async def test_commands_started_together_all_get_their_sessions_niceness(tmp_path: Path) -> None:
    """Inside the sandbox the kernel allows one autogroup change per 100 ms machine-wide:
    six commands starting at once each still end up in a group as nice as the command."""
    workspace = tmp_path / "ws"
    (workspace / ".git").mkdir(parents=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    sandbox = open_sandbox("auto", workspace, SandboxOptions(), env)
    await skip_unless_the_kernel_lets_sessions_lower_their_group(
        SubprocessRunner(base_env=env, sandbox=sandbox, niceness=0), workspace
    )
    gate = StartGate(0)
    runner = SubprocessRunner(base_env=env, sandbox=sandbox, niceness=5, start_gate=gate)
    results = await asyncio.gather(
        *(
            runner.run_argv([sys.executable, "-c", PRINT_GROUP, "5"], workspace, timeout_s=60)
            for _ in range(6)
        )
    )
    assert [(r.exit_code, r.output.strip()) for r in results] == [(0, "5")] * 6


def test_the_shim_leaves_keels_own_group_alone(tmp_path: Path) -> None:
    """Run without a session of its own, the shim is in Keel's group: it does nothing."""
    before = own_group()
    shim = autogroup_prefix(12, _always_on(tmp_path))
    done = subprocess.run([*shim, sys.executable, "-c", "print('ran')"], capture_output=True)
    assert done.stdout == b"ran\n"
    assert own_group() == before


def _always_on(tmp_path: Path) -> Path:
    path = tmp_path / "enabled"
    path.write_text("1")
    return path


async def test_a_missing_program_behind_the_shim_is_reported_as_not_found(
    tmp_path: Path,
) -> None:
    runner = SubprocessRunner(niceness=3)
    runner._autogroup = autogroup_prefix(3, _always_on(tmp_path))  # whatever this kernel does
    result = await runner.run_argv(["keel-no-such-tool"], tmp_path, timeout_s=5)
    assert (result.exit_code, result.output) == (
        NOT_FOUND_EXIT_CODE,
        "keel-no-such-tool: command not found",
    )
    line = f"{AUTOGROUP_SHIM}: 1: exec: ghost: not found"
    result = await runner.run(f'echo "{line}"; exit 127', tmp_path, timeout_s=5)
    assert (result.exit_code, result.output) == (NOT_FOUND_EXIT_CODE, line + "\n")


def _can_unshare_pids() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe = subprocess.run([unshare, "--pid", "--fork", "true"], capture_output=True, check=False)
    return probe.returncode == 0


# Keel's runner in a pid namespace whose ``/proc`` is the parent's: prints the group line its
# command saw (bounded wait, as PRINT_GROUP), then Keel's own.
RUN_IN_FOREIGN_PROC = (
    "import asyncio, sys\n"
    "from pathlib import Path\n"
    "from keel.process import SubprocessRunner\n"
    "async def main():\n"
    "    result = await SubprocessRunner(niceness=4).run_argv(\n"
    "        [sys.executable, '-c', sys.argv[1], '4'], Path.cwd(), timeout_s=30)\n"
    "    print(result.exit_code, result.output.strip())\n"
    "asyncio.run(main())\n"
)


@pytest.mark.skipif(not autogroups_on(), reason="the kernel does not group by session")
@pytest.mark.skipif(not _can_unshare_pids(), reason="cannot make a pid namespace here")
async def test_the_shim_finds_its_group_where_proc_belongs_to_another_pid_namespace(
    tmp_path: Path,
) -> None:
    """Under ``unshare --pid`` without a ``/proc`` of its own, ``/proc/$$`` is another process:
    the shim still lowers the command's own group, and no one else's."""
    await skip_unless_the_kernel_lets_sessions_lower_their_group(
        SubprocessRunner(niceness=0), tmp_path
    )
    before = own_group()
    argv = ["unshare", "--pid", "--fork", sys.executable, "-c", RUN_IN_FOREIGN_PROC, PRINT_GROUP]
    done = await asyncio.to_thread(
        subprocess.run, argv, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "0 4", done.stdout + done.stderr
    assert own_group() == before
