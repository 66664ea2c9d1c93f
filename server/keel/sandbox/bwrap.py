"""The Linux sandbox: every process that runs project or model code runs inside bubblewrap.

One :class:`BwrapSandbox` per session. :meth:`BwrapSandbox.wrap` prefixes a command line with
``bwrap`` and these options (in this order, later mounts cover earlier ones):

* ``--ro-bind / /``: the whole file system, read-only;
* ``--tmpfs`` over ``$HOME``, ``/root``, ``/home``, ``/tmp``, ``/run`` and the real workspace:
  empty directories, so the user's home (``~/.gitconfig``, ``~/.ssh``), the workspace's
  ``.git/`` and ``.keel/``, other processes' sockets and temporary files are out of sight.
  All but ``/tmp`` are then remounted read-only, so a write there fails visibly (and shows
  up as evidence) instead of vanishing; ``/tmp`` is private and writable, and ``HOME`` points
  at :data:`PRIVATE_HOME` inside it (tools may keep caches there for one command);
* ``--ro-bind`` of what must stay readable below those: the running interpreter's prefixes,
  ``PATH`` entries and toolchains under the home (``~/.cargo``, ``~/.rustup``, ``CARGO_HOME``,
  ``RUSTUP_HOME``), ``[sandbox] readonly_paths`` and the caller's
  ``readonly`` (a project's virtualenv);
* ``--bind`` of the working directory (the node's sandbox directory) and the caller's
  ``writable`` (a report file's directory): the only places a write survives;
* ``--proc /proc`` in a new pid namespace (only its own processes), ``--dev /dev``;
* new pid, ipc and uts namespaces, a new network namespace unless ``network``;
* ``--cap-drop ALL``, ``--new-session`` (no terminal injection), ``--die-with-parent``;
* ``--clearenv`` then the scrubbed environment, which is also bwrap's own environment (the
  namespace's pid 1 is bwrap: its ``/proc/1/environ`` must hold nothing secret);
* with ``memory_mb``, ``prlimit --as`` caps the address space of the whole tree.

When the command's main process exits, bwrap's pid 1 exits and the kernel kills everything
left in the pid namespace: a daemon cannot outlive its command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from keel.engine.ports import KeelError

#: Shown (with the reason) wherever Keel refuses to run verification unconfined.
FIX = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) and allow user "
    'namespaces, or set [sandbox] mode = "off" in keel.toml to verify without a sandbox'
)

_PROBE_TIMEOUT_S = 10.0

#: The sandboxed process's ``HOME``: private, writable, gone when the command ends.
PRIVATE_HOME = Path("/tmp/.keel-home")
_PRIVATE_TMP = Path("/tmp")


class SandboxUnavailable(KeelError):
    """No sandbox can be made here; the message names the fix."""


@dataclass(frozen=True)
class SandboxOptions:
    """What the configuration says (``[sandbox]``, docs/reference/configuration.md)."""

    network: bool = False
    memory_mb: int = 0
    readonly_paths: tuple[Path, ...] = ()


@dataclass(frozen=True)
class BwrapSandbox:
    """The bubblewrap implementation of :class:`~keel.engine.ports.Sandbox`.

    ``workspace`` is hidden from every sandboxed process (only the working directory and
    ``writable`` under it are bound back); ``home`` is the user's home directory to hide.
    """

    workspace: Path
    bwrap: str
    options: SandboxOptions = field(default_factory=SandboxOptions)
    home: Path | None = None
    prlimit: str | None = None
    version: str = ""

    @property
    def mode(self) -> str:
        return "bubblewrap"

    def describe(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "version": self.version,
            "network": self.options.network,
            "memory_mb": self.options.memory_mb or None,
            "readonly_paths": [str(p) for p in self.options.readonly_paths],
        }

    def hidden(self) -> list[Path]:
        """The directories covered by an empty private tmpfs, in mount order."""
        dirs = [Path("/root"), Path("/home"), Path("/tmp"), Path("/run")]
        if self.home is not None:
            dirs.insert(0, self.home)
        dirs.append(self.workspace)
        # Only existing ones (bwrap cannot make a mount point in the read-only /); parents
        # first: a home or workspace under /tmp is hidden inside the private /tmp.
        return sorted(_existing_unique(dirs), key=lambda p: len(p.parts))

    def readable(
        self, env: Mapping[str, str], readonly: Sequence[Path], hidden: list[Path] | None = None
    ) -> list[Path]:
        """What is bound back read-only below the hidden directories (``hidden``: as
        :meth:`hidden` says, when the caller has it already)."""
        hidden = self.hidden() if hidden is None else hidden
        interpreter = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix)]
        on_path = [Path(p) for p in env.get("PATH", "").split(os.pathsep) if p]
        toolchains = [Path(env[name]) for name in ("CARGO_HOME", "RUSTUP_HOME") if env.get(name)]
        if self.home is not None:
            toolchains += [self.home / ".rustup", self.home / ".cargo"]
        wanted = [*interpreter, *on_path, *toolchains]
        if self.options.network:  # name resolution, often a link into /run (systemd-resolved)
            wanted.append(Path(os.path.realpath("/etc/resolv.conf")).parent)
        under_hidden = [p for p in wanted if any(_within(p, h) for h in hidden)]
        paths = _existing_unique([*under_hidden, *self.options.readonly_paths, *readonly])
        # A path holding a hidden directory would show it again (the workspace's .git/).
        paths = [p for p in paths if not any(_within(h, p) for h in hidden)]
        # One bind per tree: ~/.cargo covers ~/.cargo/bin (each mount costs start-up time).
        return [p for p in paths if not any(o != p and _within(p, o) for o in paths)]

    def wrap(
        self,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        *,
        writable: Sequence[Path] = (),
        readonly: Sequence[Path] = (),
    ) -> list[str]:
        cwd = Path(os.path.realpath(cwd))
        args: list[str] = []
        if self.prlimit and self.options.memory_mb:
            args += [self.prlimit, f"--as={self.options.memory_mb * 1024 * 1024}", "--"]
        args += [self.bwrap, "--ro-bind", "/", "/"]
        hidden = self.hidden()
        for path in hidden:
            args += ["--tmpfs", str(path)]
        for path in self.readable(env, readonly, hidden):
            args += ["--ro-bind", str(path), str(path)]
        binds = _existing_unique([cwd, *writable])
        for path in binds:
            args += ["--bind", str(path), str(path)]
            args += _mask_repository(path)
        for path in hidden:
            if path != _PRIVATE_TMP and path not in binds:
                args += ["--remount-ro", str(path)]
        args += ["--dir", str(PRIVATE_HOME)]
        args += ["--proc", "/proc", "--dev", "/dev"]
        args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts"]
        if not self.options.network:
            args.append("--unshare-net")
        args += ["--cap-drop", "ALL", "--new-session", "--die-with-parent"]
        args += ["--chdir", str(cwd), "--clearenv"]
        for key, value in sorted(self._environment(env).items()):
            args += ["--setenv", key, value]
        return [*args, "--", *argv]

    def _environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` with the private HOME; toolchains found through the real home keep it."""
        inside = {**env, "HOME": str(PRIVATE_HOME), "TMPDIR": str(_PRIVATE_TMP)}
        if self.home is not None:
            for name, sub in (("CARGO_HOME", ".cargo"), ("RUSTUP_HOME", ".rustup")):
                if name not in inside and (self.home / sub).is_dir():
                    inside[name] = str(self.home / sub)
        return inside


def _within(path: Path, parent: Path) -> bool:
    """``path`` is ``parent`` or below it (by their parts: ``Path.parents`` builds a path per
    level, and :meth:`BwrapSandbox.wrap` asks this hundreds of times per command)."""
    inner, outer = path.parts, parent.parts
    return len(inner) >= len(outer) and inner[: len(outer)] == outer


def _existing_unique(paths: Iterable[Path]) -> list[Path]:
    """The existing ones of ``paths``: absolute, symlinks resolved, each once."""
    seen: dict[str, Path] = {}
    for path in paths:
        real = Path(os.path.realpath(path))
        if not real.exists():
            continue
        seen.setdefault(str(real), real)
    return list(seen.values())


def _mask_repository(path: Path) -> list[str]:
    """A writable directory holding a repository or Keel's state keeps them out of reach."""
    return [
        arg
        for name in (".git", ".keel")
        if (path / name).exists()
        for arg in ("--tmpfs", str(path / name), "--remount-ro", str(path / name))
    ]


_WORKING: dict[tuple[str, bool], str] = {}


def _probe(bwrap: str, network: bool) -> tuple[bool, str]:
    """Whether bwrap can make the namespaces it will be asked for, and its version.

    A success is remembered for the process (the language server asks once per session); a
    failure is not, so installing bubblewrap needs no restart.
    """
    known = _WORKING.get((bwrap, network))
    if known is not None:
        return True, known
    argv = [bwrap, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
    argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--cap-drop", "ALL"]
    if not network:
        argv.append("--unshare-net")
    argv += ["--die-with-parent", "--", "true"]
    try:
        done = subprocess.run(
            argv, capture_output=True, timeout=_PROBE_TIMEOUT_S, check=False, env={}
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    if done.returncode != 0:
        return False, done.stderr.decode("utf-8", "replace").strip() or f"exit {done.returncode}"
    version = subprocess.run(
        [bwrap, "--version"], capture_output=True, timeout=_PROBE_TIMEOUT_S, check=False
    )
    _WORKING[(bwrap, network)] = version.stdout.decode("utf-8", "replace").strip()
    return True, _WORKING[(bwrap, network)]


def open_bwrap(workspace: Path, options: SandboxOptions, env: Mapping[str, str]) -> BwrapSandbox:
    """A working bubblewrap sandbox for ``workspace``, or :class:`SandboxUnavailable`.

    Blocking (it runs bwrap once to check the namespaces can be made): call it in a thread.
    """
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailable(f"no sandbox for {sys.platform} yet: {FIX}")
    bwrap = shutil.which("bwrap", path=env.get("PATH") or os.defpath)
    if bwrap is None:
        raise SandboxUnavailable(f"cannot sandbox verification: bwrap not found; {FIX}")
    ok, detail = _probe(bwrap, options.network)
    if not ok:
        raise SandboxUnavailable(f"cannot sandbox verification: bwrap failed ({detail}); {FIX}")
    prlimit = shutil.which("prlimit", path=env.get("PATH") or os.defpath)
    if options.memory_mb and prlimit is None:
        raise SandboxUnavailable(
            "cannot limit the sandbox's memory: prlimit (util-linux) not found; install it "
            "or set [sandbox] memory_mb = 0"
        )
    home = env.get("HOME")
    readonly = tuple(Path(p).expanduser() for p in options.readonly_paths)
    options = SandboxOptions(options.network, options.memory_mb, readonly)
    return BwrapSandbox(
        workspace=Path(os.path.realpath(workspace)),
        bwrap=bwrap,
        options=options,
        home=Path(home) if home and home != "/" else None,
        prlimit=prlimit,
        version=detail,
    )
