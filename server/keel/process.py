"""Running commands without letting them hang Keel, flood it, or read its secrets.

Every subprocess Keel starts for a sandbox goes through :class:`SubprocessRunner`: the
model-proposed shell commands (``run``, the :class:`~keel.engine.ports.CommandRunner` port) and
the plugins' own tools (``run_argv``, no shell). Both share one implementation, so both get:

* a **new session** (``start_new_session=True``): the command and everything it spawns form one
  process group, so a timeout can kill all of it (SIGTERM, a short grace, then SIGKILL) and
  nothing it left running in the background outlives it;
* **stdin from /dev/null** and stdout+stderr merged into one pipe;
* an **output cap**: the first ``output_cap_bytes`` are kept, the rest is read and thrown
  away (the pipe keeps draining, so the child never blocks on a full pipe) and a
  ``[... N bytes truncated]`` note is appended;
* a **scrubbed environment**: only :data:`ENV_ALLOW_LIST` is copied from the base environment,
  plus the runner's explicit extras, so API keys and tokens never reach a command the model
  proposed;
* a **sandbox** (:class:`~keel.engine.ports.Sandbox`, bubblewrap on Linux) when the runner is
  given one: :mod:`keel.app` gives every session's runner one, so the model's commands, the
  test runner, the checker and build commands all run confined (docs/explanation/sandbox.md);
* a **lower priority** (``niceness``, through ``nice -n N`` in front of the command line, so
  the sandbox and everything the command spawns inherit it): ``keel serve`` stays first in
  line for the CPU while eight nodes verify. Where the kernel groups processes by session
  (``sched_autogroup``, on by default in most desktop distributions), a process in a new
  session competes as a group of its own and its nice value counts only inside that group;
  so the command's session gets the same niceness (:func:`autogroup_prefix`);
* a **staggered start** (:class:`StartGate`): one child starts at a time, at least
  ``interval_s`` after the one before, so eight nodes reaching verification together do not
  fork sixteen processes in the same tick.

Exit codes follow the shell's conventions so a caller can tell the cases apart:
:data:`TIMEOUT_EXIT_CODE` (124, as GNU ``timeout``) when the deadline passed,
:data:`NOT_FOUND_EXIT_CODE` (127) when the executable does not exist,
:data:`NOT_EXECUTABLE_EXIT_CODE` (126) when it cannot be started, and ``128 + N`` when the
command died of signal ``N``. None of these raise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shlex
import shutil
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from keel.engine.models import CommandResult
from keel.engine.ports import Sandbox

log = logging.getLogger(__name__)

#: Exit code reported when the command ran past its timeout (as GNU ``timeout`` does).
TIMEOUT_EXIT_CODE = 124
#: Exit code reported when the command could not be started (permission, bad cwd).
NOT_EXECUTABLE_EXIT_CODE = 126
#: Exit code reported when the executable does not exist (as the shell does).
NOT_FOUND_EXIT_CODE = 127

#: Exit code reported when the process exited but its status could not be collected.
UNKNOWN_EXIT_CODE = 255

DEFAULT_OUTPUT_CAP_BYTES = 64 * 1024
DEFAULT_KILL_GRACE_S = 2.0

#: The only variables copied from the base environment. Everything else (API keys, tokens,
#: cloud credentials, PYTHONPATH) stays out of the child's environment.
ENV_ALLOW_LIST: tuple[str, ...] = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "TMPDIR",
    "USER",
    "SHELL",
    "VIRTUAL_ENV",
)

#: Always set: no ``__pycache__`` written into sandboxes, pip never waits for a prompt.
FIXED_ENV: Mapping[str, str] = {"PYTHONDONTWRITEBYTECODE": "1", "PIP_NO_INPUT": "1"}

#: How much lower than Keel's own the priority of a command is (``nice -n``; 0: the same).
DEFAULT_NICENESS = 10
#: The least time between two children's starts (:class:`StartGate`).
DEFAULT_START_INTERVAL_S = 0.02

_READ_CHUNK = 64 * 1024
_DRAIN_AFTER_EXIT_S = 2.0


def scrubbed_env(
    base: Mapping[str, str] | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The allow-listed part of ``base`` (default ``os.environ``), the fixed ones, ``extra``."""
    source = os.environ if base is None else base
    env = {key: source[key] for key in ENV_ALLOW_LIST if key in source}
    env.update(FIXED_ENV)
    if extra:
        env.update(extra)
    return env


class ToolRunner(Protocol):
    """What the language plugins need: the port's ``run`` plus argv runs and the child env."""

    async def run(self, command: str, cwd: Path, *, timeout_s: float) -> CommandResult: ...

    async def run_argv(
        self,
        argv: Sequence[str],
        cwd: Path,
        *,
        timeout_s: float,
        env: Mapping[str, str] | None = None,
        writable: Sequence[Path] = (),
    ) -> CommandResult: ...

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]: ...

    def confine(
        self,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        *,
        writable: Sequence[Path] = (),
    ) -> list[str]: ...


@dataclass
class _Capture:
    """The kept head of a stream and how many bytes it had in all."""

    head: bytearray
    total: int = 0


async def _read_capped(stream: asyncio.StreamReader, cap: int, capture: _Capture) -> None:
    """Read ``stream`` to EOF, keeping at most ``cap`` bytes (the rest is drained, not kept)."""
    while chunk := await stream.read(_READ_CHUNK):
        capture.total += len(chunk)
        room = cap - len(capture.head)
        if room > 0:
            capture.head.extend(chunk[:room])


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to the process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a group we do not own; nothing to do
        return False
    return True


async def wait_for_exit(process: asyncio.subprocess.Process) -> None:
    """Until the process itself exits.

    Not ``process.wait()``: asyncio's wait also waits for the pipes to close, which a child
    left running in the background (``sleep 30 &``) would hold open. A pidfd becomes readable
    the moment the process exits, without reaping it or polling. Where pidfds are not
    available (Linux before 5.3), this falls back to ``process.wait()`` and its caveat.
    """
    try:
        fd = os.pidfd_open(process.pid)
    except ProcessLookupError:
        return  # already exited and reaped
    except (AttributeError, OSError):  # pragma: no cover - kernels without pidfd
        await process.wait()
        return
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(fd, on_exit)
    try:
        await exited
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def kill_process_group(
    process: asyncio.subprocess.Process, grace_s: float = DEFAULT_KILL_GRACE_S
) -> None:
    """SIGTERM the process's group, give the leader ``grace_s`` to exit, then SIGKILL the group.

    The process must have been started with ``start_new_session=True`` (its pid is then its
    process group id). Also run after a normal exit, to end whatever the command left running
    in the background. Used by the runner and by the LSP client for its server process.
    """
    pgid = process.pid
    if _signal_group(pgid, signal.SIGTERM):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wait_for_exit(process), grace_s)
    # Children may ignore SIGTERM or outlive their parent: finish the whole group.
    if _signal_group(pgid, signal.SIGKILL):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wait_for_exit(process), grace_s)


async def _returncode(process: asyncio.subprocess.Process) -> int | None:
    """The exit status, once asyncio has collected it (bounded: pipes may be held open)."""
    try:
        return await asyncio.wait_for(process.wait(), _DRAIN_AFTER_EXIT_S)
    except TimeoutError:
        return process.returncode


def _exit_code(returncode: int | None) -> int:
    if returncode is None:  # exited, but asyncio never reported how
        return UNKNOWN_EXIT_CODE
    return 128 - returncode if returncode < 0 else returncode


def _render(capture: _Capture, cap: int, notes: Sequence[str]) -> tuple[str, bool]:
    text = bytes(capture.head).decode("utf-8", errors="replace")
    truncated = capture.total > cap
    if truncated:
        text += f"\n[... {capture.total - len(capture.head)} bytes truncated]"
    for note in notes:
        text += f"\n[{note}]"
    return text, truncated


class StartGate:
    """Lets one child process start at a time, each at least ``interval_s`` after the last.

    A runner holds its gate around the spawn only (fork and exec, and the sandbox's set-up
    before it), never around the command's run, so commands still run side by side; only
    their starts are spread out. ``clock`` and ``sleep`` are for tests.
    """

    def __init__(
        self,
        interval_s: float = DEFAULT_START_INTERVAL_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if interval_s < 0:
            raise ValueError("interval_s must be 0 or more")
        self.interval_s = interval_s
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._last: float | None = None
        self.starts = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Held while one child starts; waits for the one before and for the interval."""
        async with self._lock:
            if self._last is not None:
                wait = self._last + self.interval_s - self._clock()
                if wait > 0:
                    await self._sleep(wait)  # a rate limit, not a synchronisation
            try:
                yield
            finally:
                self._last = self._clock()
                self.starts += 1


def nice_prefix(niceness: int) -> list[str]:
    """``["nice", "-n", N]`` (the executable's absolute path), or ``[]`` for 0 or no ``nice``."""
    if niceness <= 0:
        return []
    nice = shutil.which("nice", path=os.defpath + os.pathsep + "/usr/bin:/bin")
    if nice is None:
        log.warning("no `nice` executable: commands run at Keel's own priority")
        return []
    return [nice, "-n", str(niceness)]


#: The name the autogroup shim gives itself (``$0``): its own messages start with it.
AUTOGROUP_SHIM = "keel-nice"
_AUTOGROUP_ENABLED = Path("/proc/sys/kernel/sched_autogroup_enabled")
_OWN_AUTOGROUP = Path("/proc/self/autogroup")


def autogroup_prefix(
    niceness: int, enabled: Path = _AUTOGROUP_ENABLED, own: Path = _OWN_AUTOGROUP
) -> list[str]:
    """A ``/bin/sh`` shim that lowers the priority of the command's own session, then execs it.

    With autogroups on, every session is scheduled as one group with the weight of a nice-0
    process whatever the nice values inside it, so ``nice -n 10`` on a command started in a
    new session (as every command here is; bubblewrap's ``--new-session`` makes another)
    gives it as much CPU as ``keel serve``. Writing the niceness to ``/proc/self/autogroup``
    lowers the group's weight (an unprivileged process may lower, never raise, it). The shim
    writes only when its group is not Keel's own (``own``, read now), so Keel's priority is
    never touched; where the file cannot be written the command runs all the same (at its
    own ``nice``). An empty ``own`` means Keel never left the kernel's root group (started by
    an init that makes no session, as CI machines do): then every group a command can read
    is its own session's, and only a command that shares Keel's root group, whose file is
    empty too, is left alone. ``[]`` when autogroups are off or ``niceness`` is 0.
    """
    try:
        on = enabled.read_text().strip() == "1"
        keel_group = next(iter(own.read_text().split()), "")
    except OSError:
        return []
    if niceness <= 0 or not on or not re.fullmatch(r"(/autogroup-\d+)?", keel_group):
        return []
    # The kernel lets an unprivileged process change an autogroup's niceness only once per
    # 100 ms machine-wide (EAGAIN otherwise), so commands starting together would mostly keep
    # nice 0. A background subshell (forked from the shell, so in the same group) retries until
    # it lands, the command ends (``$$`` there is still the shell's pid, which becomes the
    # command's at ``exec``), or 10 s pass; the command itself starts at once. It names its
    # group through ``/proc/self``, never ``/proc/$$``: where ``/proc`` belongs to another pid
    # namespace than the shell's (a job started by ``unshare --pid`` without its own ``/proc``)
    # ``/proc/$$`` is some other process, whose group must not be touched.
    retry = (
        f"i=0; until echo {niceness} > /proc/self/autogroup; do i=$((i+1));"
        " [ $i -lt 200 ] && kill -0 $$ || break; sleep 0.05; done"
    )
    script = (
        f'{{ read -r group _ < /proc/self/autogroup && [ "$group" != "{keel_group}" ]'
        f' && ( {retry} ) </dev/null >/dev/null 2>&1 & }} 2>/dev/null; exec "$@"'
    )
    return ["/bin/sh", "-c", script, AUTOGROUP_SHIM]


class SubprocessRunner:
    """The :class:`~keel.engine.ports.CommandRunner` (and :class:`ToolRunner`) of Keel.

    ``base_env`` is where the allow-listed variables come from (default ``os.environ``);
    ``extra_env`` is added on top of them for every command (for example a sandbox's
    ``VIRTUAL_ENV``). ``kill_grace_s`` is how long a timed-out group gets between SIGTERM and
    SIGKILL. ``sandbox`` confines every command (none: they run unconfined, for Keel's own
    tests of the runner); ``readonly_paths`` are directories every command may also read
    (the project's virtualenv or toolchain). ``niceness`` lowers every command's priority
    (``nice -n``; 0: Keel's own) and ``start_gate`` staggers their starts (default: a gate of
    this runner's own with :data:`DEFAULT_START_INTERVAL_S`).
    """

    def __init__(
        self,
        *,
        output_cap_bytes: int = DEFAULT_OUTPUT_CAP_BYTES,
        base_env: Mapping[str, str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        kill_grace_s: float = DEFAULT_KILL_GRACE_S,
        shell: str = "/bin/sh",
        sandbox: Sandbox | None = None,
        readonly_paths: Sequence[Path] = (),
        niceness: int = DEFAULT_NICENESS,
        start_gate: StartGate | None = None,
    ) -> None:
        if output_cap_bytes <= 0:
            raise ValueError("output_cap_bytes must be positive")
        if not 0 <= niceness <= 19:
            raise ValueError("niceness must be between 0 and 19")
        self.output_cap_bytes = output_cap_bytes
        self.kill_grace_s = kill_grace_s
        self.shell = shell
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._extra_env = dict(extra_env or {})
        self.sandbox = sandbox
        self.readonly_paths = tuple(readonly_paths)
        self.niceness = niceness
        self._nice = nice_prefix(niceness)
        self._autogroup = autogroup_prefix(niceness)
        self.start_gate = start_gate if start_gate is not None else StartGate()

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The scrubbed environment a child gets, with ``extra`` layered on top."""
        env = scrubbed_env(self._base_env, self._extra_env)
        if extra:
            env.update(extra)
        return env

    def confine(
        self,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        *,
        writable: Sequence[Path] = (),
    ) -> list[str]:
        """The command line that runs ``argv`` in this runner's sandbox (as is without one), at
        the runner's lower priority (``nice -n N`` in front: the sandbox and everything in it
        inherit it; inside the sandbox, the :func:`autogroup_prefix` shim in front of ``argv``
        gives the command's session the same niceness).

        ``cwd`` and ``writable`` are the only places it may write. The language plugins use
        it for the processes they start themselves (the checker's language server).
        """
        inner = [*self._autogroup, *argv]
        if self.sandbox is None:
            return [*self._nice, *inner]
        wrapped = self.sandbox.wrap(
            inner, cwd, env, writable=writable, readonly=self.readonly_paths
        )
        return [*self._nice, *wrapped]

    async def run(self, command: str, cwd: Path, *, timeout_s: float) -> CommandResult:
        """Run ``command`` through ``/bin/sh -c`` in ``cwd``; never raises for the command's sake.

        A timeout kills the command's whole process group and gives ``timed_out=True`` with
        exit code :data:`TIMEOUT_EXIT_CODE` (124).
        """
        argv = [self.shell, "-c", command]
        return await self._execute(argv, cwd, timeout_s, None, (), command)

    async def run_argv(
        self,
        argv: Sequence[str],
        cwd: Path,
        *,
        timeout_s: float,
        env: Mapping[str, str] | None = None,
        writable: Sequence[Path] = (),
    ) -> CommandResult:
        """Run ``argv`` without a shell; ``env`` is layered over the scrubbed environment.

        ``writable`` are directories besides ``cwd`` the command may write in the sandbox
        (where a report file goes). A missing executable gives exit code
        :data:`NOT_FOUND_EXIT_CODE` (127) and a message saying so, instead of raising.
        """
        if not argv:
            raise ValueError("run_argv needs at least the executable")
        return await self._execute(list(argv), cwd, timeout_s, env, writable, shlex.join(argv))

    async def _execute(
        self,
        argv: list[str],
        cwd: Path,
        timeout_s: float,
        env: Mapping[str, str] | None,
        writable: Sequence[Path],
        label: str,
    ) -> CommandResult:
        # Shielded: a caller cancelled mid-spawn must still get the new group killed (asyncio
        # alone would kill only the leader, leaving its background children running).
        spawn = asyncio.ensure_future(self._spawn(argv, cwd, env, writable))
        try:
            process = await asyncio.shield(spawn)
        except asyncio.CancelledError:
            await self._kill_spawned(spawn)
            raise
        except FileNotFoundError as exc:
            if exc.filename is not None and str(exc.filename) == str(cwd):
                message = f"cannot run: working directory {cwd} does not exist"
                return CommandResult(label, NOT_EXECUTABLE_EXIT_CODE, message)
            message = f"{argv[0]}: command not found"
            return CommandResult(label, NOT_FOUND_EXIT_CODE, message)
        except OSError as exc:
            message = f"{argv[0]}: cannot execute: {exc.strerror or exc}"
            return CommandResult(label, NOT_EXECUTABLE_EXIT_CODE, message)
        result = await self._supervise(process, label, timeout_s)
        if self._autogroup:
            result = _shim_exec_failure(result, argv[0])
        if self.sandbox is not None:
            return _sandbox_exec_failure(result)
        if self._nice:
            path = self.environment(env).get("PATH")
            return _nice_exec_failure(result, argv[0], self._nice[0], path)
        return result

    async def _spawn(
        self, argv: list[str], cwd: Path, env: Mapping[str, str] | None, writable: Sequence[Path]
    ) -> asyncio.subprocess.Process:
        environment = self.environment(env)
        command = self.confine(argv, cwd, environment, writable=writable)
        async with self.start_gate.slot():
            process = await asyncio.create_subprocess_exec(
                *command,
                cwd=cwd,
                env=environment,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        return process

    async def _kill_spawned(self, spawn: asyncio.Future[asyncio.subprocess.Process]) -> None:
        try:
            process = await spawn
        except Exception:
            return  # it never started
        await kill_process_group(process, self.kill_grace_s)
        await _returncode(process)

    async def _supervise(
        self, process: asyncio.subprocess.Process, label: str, timeout_s: float
    ) -> CommandResult:
        """Wait for exit within the deadline while draining output; kill the group after."""
        assert process.stdout is not None
        capture = _Capture(bytearray())
        reader = asyncio.create_task(_read_capped(process.stdout, self.output_cap_bytes, capture))
        notes: list[str] = []
        timed_out = False
        try:
            await asyncio.wait_for(wait_for_exit(process), timeout_s)
        except TimeoutError:
            timed_out = True
            notes.append(f"timed out after {timeout_s:g} s; process group killed")
        except asyncio.CancelledError:  # the caller gave up: the command must not outlive it
            reader.cancel()
            await kill_process_group(process, self.kill_grace_s)
            await _returncode(process)
            raise
        # Kills a timed-out command, and anything a finished one left in the background
        # (which would otherwise hold the pipe open and outlive the sandbox).
        await kill_process_group(process, self.kill_grace_s)
        await self._finish_reading(reader, notes)
        returncode = await _returncode(process)
        output, truncated = _render(capture, self.output_cap_bytes, notes)
        exit_code = TIMEOUT_EXIT_CODE if timed_out else _exit_code(returncode)
        log.debug("command %r exited %s (timed_out=%s)", label, exit_code, timed_out)
        return CommandResult(label, exit_code, output, timed_out=timed_out, truncated=truncated)

    @staticmethod
    async def _finish_reading(reader: asyncio.Task[None], notes: list[str]) -> None:
        """Let the reader reach EOF; a process that escaped the group cannot hold us forever."""
        try:
            await asyncio.wait_for(reader, _DRAIN_AFTER_EXIT_S)
        except TimeoutError:
            notes.append("output pipe still held open by an escaped process; stopped reading")


def _shim_exec_failure(result: CommandResult, program: str) -> CommandResult:
    """The autogroup shim's "cannot exec" of ``program`` (sh's 127 or 126, one line such as
    ``keel-nice: 1: exec: prog: not found``) as the runner says it without the shim; a
    command's own output that merely looks like it (another program named) stays as it is."""
    first, _, rest = result.output.partition("\n")
    if result.exit_code not in (126, 127) or rest.strip():
        return result
    if not first.startswith(f"{AUTOGROUP_SHIM}: "):
        return result
    _, found, tail = first.partition(": exec: ")
    if not found:
        return result
    named, _, reason = tail.rpartition(": ")
    if named != program:
        return result
    if result.exit_code == NOT_FOUND_EXIT_CODE:
        return CommandResult(result.command, NOT_FOUND_EXIT_CODE, f"{program}: command not found")
    message = f"{program}: cannot execute: {reason}"
    return CommandResult(result.command, NOT_EXECUTABLE_EXIT_CODE, message)


def _sandbox_exec_failure(result: CommandResult) -> CommandResult:
    """bwrap's "cannot exec" (its exit 1) as the shell's 127 (not found) or 126."""
    first = result.output.partition("\n")[0]
    if result.exit_code != 1 or not first.startswith("bwrap: execvp "):
        return result
    program, _, reason = first.removeprefix("bwrap: execvp ").rpartition(": ")
    if reason == "No such file or directory":
        return CommandResult(result.command, NOT_FOUND_EXIT_CODE, f"{program}: command not found")
    message = f"{program}: cannot execute: {reason}"
    return CommandResult(result.command, NOT_EXECUTABLE_EXIT_CODE, message)


def _nice_exec_failure(
    result: CommandResult, program: str, nice: str, path: str | None
) -> CommandResult:
    """``nice``'s "cannot exec" (its 127 or 126, one line) as the runner says it without it.

    Only when ``program`` really cannot be run from the child's ``PATH``: a command that runs
    and itself exits 127 with a line starting ``nice:`` keeps its own result.
    """
    first, _, rest = result.output.partition("\n")
    said_by_nice = first.startswith((f"{nice}: ", "nice: ")) and program in first
    if result.exit_code not in (126, 127) or rest.strip() or not said_by_nice:
        return result
    if shutil.which(program, path=path) is not None:
        return result
    if result.exit_code == NOT_FOUND_EXIT_CODE:
        return CommandResult(result.command, NOT_FOUND_EXIT_CODE, f"{program}: command not found")
    reason = first.rpartition(": ")[2]
    message = f"{program}: cannot execute: {reason}"
    return CommandResult(result.command, NOT_EXECUTABLE_EXIT_CODE, message)
