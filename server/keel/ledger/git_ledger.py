"""The git-backed ledger (docs/explanation/ledger.md): every approval is one commit in the
workspace.

Why plumbing instead of ``git add`` + ``git commit``: the user's staged and unstaged work in
other files must stay exactly as it was. So a commit is built in a *temporary* index
(``GIT_INDEX_FILE``) from ``HEAD`` plus the approved files, the branch is moved with a
compare-and-swap ``update-ref``, and only then are the committed paths' entries in the user's
real index set to the new blobs, so those files show as clean while every other entry keeps
its staged content.

Why the ledger is read back from git (``git log`` trailers) rather than from the session
store: a clone, push or pull carries it, and the repository stays the single source of truth.

Files are written atomically (``keel.bundles.atomic``: temporary file, fsync, rename, directory
fsync) so a crash never leaves one half written. A retried approval whose files were already
written before a crash is accepted, so ``keel resume`` can finish it.

All git work runs in worker threads; a single :class:`asyncio.Lock` serialises writes in this
process and the ``update-ref`` compare-and-swap guards against anyone else moving ``HEAD``.

Keel's own git calls (the policy is docs/explanation/ledger.md):

- run with hooks disabled (``core.hooksPath=/dev/null``, no fsmonitor command) and a scrubbed
  environment: nothing inherited may redirect them (``GIT_DIR``, ``GIT_INDEX_FILE``,
  ``GIT_CONFIG_*``, ``GIT_EXEC_PATH``...) and no secret reaches git or a hook;
- the ledger commit runs the user's own ``pre-commit``, ``prepare-commit-msg``,
  ``commit-msg`` and ``post-commit`` hooks as ``git commit`` would, and signs when
  ``commit.gpgsign`` is set; a hook or signature that fails refuses the commit
  (:class:`LedgerRefused`, with the output) and nothing stays written;
- a rebase, merge, cherry-pick, revert or bisect in progress, or a detached ``HEAD``, refuses
  every ledger commit before anything is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from keel.bundles.atomic import fsync_directory, stale_temporaries, write_atomically
from keel.engine.models import LedgerEntry
from keel.engine.ports import (
    ConfigError,
    ConflictError,
    FaultPoint,
    KeelError,
    LedgerRefused,
    NoFaults,
)

_log = logging.getLogger(__name__)

TRAILER_SESSION = "Keel-Session"
TRAILER_NODE = "Keel-Node"
TRAILER_BUNDLE = "Keel-Bundle"
TRAILER_ENERGY = "Keel-Energy"
TRAILER_APPROVED_BY = "Keel-Approved-By"
TRAILER_REVERTS = "Keel-Reverts"

_SUBJECT_PREFIX = "keel: "
_RECORD = "\x1e"
_FIELD = "\x1f"
_LOG_FORMAT = "%x1e%H%x1f%s%x1f%cI%x1f%(trailers:only,unfold)%x1f"
_LOG_OPTIONS = ("-z", "--no-color", "--no-renames", "--no-show-signature", "--name-only")
_FORBIDDEN_ROOTS = frozenset({".git", ".keel"})
_Changes = Mapping[str, bytes | None]
_IndexEntry = tuple[str, str | None]  # (repository path, "mode,blob" or None: delete)
_EXCLUDE_LINES = frozenset({".keel/", "/.keel/", ".keel", "/.keel"})

#: Put before the arguments of every git call Keel makes for itself: no hook runs (the
#: ledger commit runs the user's hooks itself, by policy) and no fsmonitor command starts.
PLUMBING_CONFIG = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")
#: The only variables Keel's git and the user's hooks inherit: finding programs and the
#: user's configuration, the locale, and what signing needs (gpg's home, ssh and gpg agents).
_PASSED_ENV = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "TZ",
        "TMPDIR",
        "XDG_CONFIG_HOME",
        "GNUPGHOME",
        "GPG_TTY",
        "GPG_AGENT_INFO",
        "SSH_AUTH_SOCK",
    }
)
#: What git leaves in the git directory while an operation waits for the user, and the fix.
_IN_PROGRESS = (
    ("rebase-merge", "a rebase", "git rebase --continue (or --abort)"),
    ("rebase-apply", "a rebase or git am", "git rebase --continue or git am --continue"),
    ("MERGE_HEAD", "a merge", "git merge --continue (or --abort)"),
    ("CHERRY_PICK_HEAD", "a cherry-pick", "git cherry-pick --continue (or --abort)"),
    ("REVERT_HEAD", "a revert", "git revert --continue (or --abort)"),
    ("BISECT_LOG", "a bisect", "git bisect reset"),
)
HOOK_TIMEOUT_S = 600.0
_HOOK_OUTPUT_CHARS = 4000


def git_environment(
    extra: Mapping[str, str] | None = None, source: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a git process Keel starts: ``source`` (default: this process's)
    reduced to :data:`_PASSED_ENV` and ``LC_*``, then ``extra``. No ``GIT_*`` variable and no
    secret is inherited."""
    origin = os.environ if source is None else source
    env = {k: v for k, v in origin.items() if k in _PASSED_ENV or k.startswith("LC_")}
    env.update({"LC_ALL": "C", "LANGUAGE": "C", "GIT_TERMINAL_PROMPT": "0"})
    env.update(extra or {})
    return env


def git_command(*args: str) -> list[str]:
    """``git`` with :data:`PLUMBING_CONFIG` and ``args``: for Keel's own calls elsewhere."""
    return ["git", *PLUMBING_CONFIG, *args]


def _execute(
    args: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    stdin: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            git_command(*args),
            cwd=cwd,
            env=dict(env),
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
    except FileNotFoundError as err:
        raise KeelError("git is not installed or not on PATH") from err
    except OSError as err:
        raise KeelError(f"cannot run git: {err.strerror or err}") from err


def _failure(args: Sequence[str], proc: subprocess.CompletedProcess[bytes]) -> KeelError:
    detail = proc.stderr.decode("utf-8", "replace").strip()
    return KeelError(f"git {args[0]} failed: {detail or f'exit status {proc.returncode}'}")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


#: Where the work tree, the repository, its index and its exclude file are, in one call.
_DISCOVER = (
    "rev-parse",
    "--show-toplevel",
    "--absolute-git-dir",
    "--git-path",
    "index",
    "--show-prefix",
    "--git-path",
    "info/exclude",
)


@dataclass(frozen=True)
class _Layout:
    """Where the repository lives relative to the workspace."""

    toplevel: Path
    git_dir: Path
    index: Path
    exclude: Path
    prefix: str  # the workspace's path inside the repository: "" or "sub/dir/"


@dataclass(frozen=True)
class _Record:
    """A ledger entry plus its files as repository paths (the entry's are workspace paths)."""

    entry: LedgerEntry
    git_files: tuple[str, ...]


class GitLedger:
    """The :class:`keel.engine.ports.Ledger` over a real git repository.

    The constructor prepares the repository (``git init`` when the workspace is not in one,
    ``.keel/`` in ``info/exclude``); :meth:`open` does the same off the event loop. With
    ``create=False`` (``keel ledger``, reports) it only uses an existing repository as it is
    and refuses a directory outside one: reading the ledger must never make a repository.
    ``stale_lock_s`` is the age after which a leftover ``index.lock`` is taken as abandoned.
    """

    def __init__(
        self,
        workspace: Path,
        *,
        author_name: str = "Keel",
        author_email: str = "keel@localhost",
        stale_lock_s: float = 60.0,
        faults: FaultPoint | None = None,
        create: bool = True,
    ) -> None:
        self._workspace = Path(workspace).resolve()
        self._faults: FaultPoint = faults or NoFaults()
        self._identity = {
            "GIT_AUTHOR_NAME": author_name,
            "GIT_AUTHOR_EMAIL": author_email,
            "GIT_COMMITTER_NAME": author_name,
            "GIT_COMMITTER_EMAIL": author_email,
        }
        self._stale_lock_s = stale_lock_s
        self._lock = asyncio.Lock()
        self._layout = self._prepare(create)

    @classmethod
    async def open(
        cls,
        workspace: Path,
        *,
        author_name: str = "Keel",
        author_email: str = "keel@localhost",
        stale_lock_s: float = 60.0,
        faults: FaultPoint | None = None,
        create: bool = True,
    ) -> GitLedger:
        """Construct the ledger in a worker thread (it may run ``git init``)."""
        return await asyncio.to_thread(
            lambda: cls(
                workspace,
                author_name=author_name,
                author_email=author_email,
                stale_lock_s=stale_lock_s,
                faults=faults,
                create=create,
            )
        )

    @property
    def workspace(self) -> Path:
        return self._workspace

    # ----------------------------------------------------------------- the Ledger port

    async def export(self, dest: Path) -> None:
        await asyncio.to_thread(self._export_sync, Path(dest))

    async def read(self, path: str) -> bytes | None:
        return await asyncio.to_thread(lambda: self._read_sync(self._clean(path)))

    async def head(self) -> str | None:
        return await asyncio.to_thread(self._head)

    async def commit(
        self,
        changes: Mapping[str, bytes | None],
        base: Mapping[str, bytes | None],
        message: str,
        trailers: Mapping[str, str],
    ) -> str:
        async with self._lock:
            return await asyncio.to_thread(self._commit_sync, changes, base, message, trailers)

    async def settle_index(self, paths: Sequence[str]) -> None:
        """Finish an interrupted commit: index entries of ``paths`` follow HEAD again.

        A process killed between moving HEAD and updating the user's index leaves those
        files looking staged-for-revert. For each path whose working file already matches
        HEAD, the index entry is set to HEAD's; anything else (the user's work) is left alone.
        """
        async with self._lock:
            await asyncio.to_thread(self._settle_index_sync, list(paths))

    async def merge(
        self, base: bytes | None, ours: bytes | None, theirs: bytes | None
    ) -> bytes | None:
        """Three-way merge with ``git merge-file``; ``None`` when the changes conflict."""
        return await asyncio.to_thread(self._merge_sync, base, ours, theirs)

    async def entries(self, limit: int | None = None) -> list[LedgerEntry]:
        records = await asyncio.to_thread(self._records_sync, limit)
        return [record.entry for record in records]

    async def show(self, entry: str) -> tuple[LedgerEntry, str]:
        return await asyncio.to_thread(self._show_sync, entry)

    async def rollback(self, entry: str) -> str:
        async with self._lock:
            return await asyncio.to_thread(self._rollback_sync, entry)

    async def check_ready(self) -> None:
        """Refuse (:class:`LedgerRefused`) when git is mid-operation or ``HEAD`` is detached."""
        await asyncio.to_thread(self._check_state)

    # ----------------------------------------------------------------- preparation

    def _prepare(self, create: bool) -> _Layout:
        if not self._workspace.is_dir():
            raise KeelError(f"workspace {self._workspace} is not a directory")
        env = git_environment()
        # One git call in an existing repository (every command that reads the ledger pays
        # for it): asking where things are fails outside a repository, saying so.
        proc = _execute(_DISCOVER, self._workspace, env)
        if proc.returncode != 0:
            detail = _text(proc.stderr).strip()
            if "not a git repository" not in detail:
                raise KeelError(f"cannot use {self._workspace} as a git workspace: {detail}")
            if not create:
                raise ConfigError(
                    f"{self._workspace} is not in a git repository, so it has no Keel ledger"
                )
            done = _execute(["init", "-q", "-b", "main"], self._workspace, env)
            if done.returncode != 0:
                raise _failure(["init"], done)
            _log.info("initialised a git repository in %s", self._workspace)
            proc = _execute(_DISCOVER, self._workspace, env)
        layout = self._discover(proc)
        if create:
            _ensure_excluded(layout.exclude)
        return layout

    def _discover(self, proc: subprocess.CompletedProcess[bytes]) -> _Layout:
        if proc.returncode != 0:
            raise KeelError(
                f"cannot use {self._workspace} as a git workspace: {_failure(_DISCOVER, proc)}"
            )
        top, git_dir, index, prefix, exclude = _text(proc.stdout).rstrip("\n").split("\n")
        return _Layout(
            toplevel=Path(top).resolve(),
            git_dir=Path(git_dir),
            index=(self._workspace / index).resolve(),
            exclude=(self._workspace / exclude).resolve(),
            prefix=prefix,
        )

    # ----------------------------------------------------------------- git plumbing

    def _env(
        self, index: Path | None = None, extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        return git_environment(
            {
                "GIT_DIR": str(self._layout.git_dir),
                "GIT_WORK_TREE": str(self._layout.toplevel),
                "GIT_INDEX_FILE": str(index or self._layout.index),
                "GIT_LITERAL_PATHSPECS": "1",
                **(extra or {}),
            }
        )

    def _exec(
        self,
        args: Sequence[str],
        *,
        index: Path | None = None,
        extra: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        return _execute(args, self._layout.toplevel, self._env(index, extra), stdin)

    def _run(
        self,
        args: Sequence[str],
        *,
        index: Path | None = None,
        extra: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> str:
        """Run git and return its stdout as text; failures become :class:`KeelError`."""
        return _text(self._run_bytes(args, index=index, extra=extra, stdin=stdin))

    def _run_bytes(
        self,
        args: Sequence[str],
        *,
        index: Path | None = None,
        extra: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> bytes:
        proc = self._exec(args, index=index, extra=extra, stdin=stdin)
        if proc.returncode != 0:
            raise _failure(args, proc)
        return proc.stdout

    def _merge_sync(
        self, base: bytes | None, ours: bytes | None, theirs: bytes | None
    ) -> bytes | None:
        if ours == theirs or base == ours:
            return theirs
        if base == theirs:
            return ours
        if base is None or ours is None or theirs is None:
            return None  # one side created or deleted what the other changed
        with tempfile.TemporaryDirectory(prefix="keel-merge-") as tmp:
            names = []
            for name, data in (("ours", ours), ("base", base), ("theirs", theirs)):
                (Path(tmp) / name).write_bytes(data)
                names.append(str(Path(tmp) / name))
            proc = self._exec(["merge-file", "-p", "--quiet", *names])
        if proc.returncode > 0:
            return None  # merge-file exits with the number of conflicts
        if proc.returncode < 0:
            raise _failure(["merge-file"], proc)
        return proc.stdout

    def _verify(self, rev: str) -> str | None:
        """The object name ``rev`` resolves to, or ``None`` when it does not exist."""
        proc = self._exec(["rev-parse", "--verify", "--quiet", rev])
        if proc.returncode != 0:
            return None
        return _text(proc.stdout).strip() or None

    def _head(self) -> str | None:
        return self._verify("HEAD^{commit}")

    @contextlib.contextmanager
    def _temp_index(self) -> Iterator[Path]:
        """A throwaway index file inside the git directory, removed afterwards."""
        path = self._layout.git_dir / f"keel-index-{secrets.token_hex(6)}"
        try:
            yield path
        finally:
            for leftover in (path, path.with_name(path.name + ".lock")):
                leftover.unlink(missing_ok=True)

    def _check_state(self) -> None:
        """Refuse a commit git itself would not make now, before anything is written."""
        for name, what, fix in _IN_PROGRESS:  # first: a rebase also detaches HEAD
            if (self._layout.git_dir / name).exists():
                raise LedgerRefused(
                    f"{what} is in progress in {self._layout.toplevel}: finish it with `{fix}`, "
                    "then try again; Keel writes nothing meanwhile"
                )
        if self._exec(["symbolic-ref", "-q", "HEAD"]).returncode != 0:
            at = self._head()
            raise LedgerRefused(
                f"HEAD is detached{f' at {at[:12]}' if at else ''}: Keel commits only onto a "
                "branch; run `git switch BRANCH` (or `git switch -c BRANCH`) and try again"
            )

    def _check_index_lock(self) -> None:
        lock = self._layout.index.with_name(self._layout.index.name + ".lock")
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return
        if age > self._stale_lock_s:
            _log.warning("removing stale git lock %s (%.0f s old)", lock, age)
            lock.unlink(missing_ok=True)
            return
        raise KeelError(
            f"{lock} exists: another git command is running; if none is, remove {lock} "
            "and approve again"
        )

    # ----------------------------------------------------------------- paths and files

    def _clean(self, path: str) -> str:
        """The normalised workspace-relative path, or :class:`KeelError` when it escapes."""
        if not path or "\0" in path:
            raise KeelError(f"invalid path {path!r}")
        pure = PurePosixPath(path)
        if pure.is_absolute():
            raise KeelError(f"refusing absolute path {path!r}: paths must be inside the workspace")
        parts = [part for part in pure.parts if part != "."]
        if not parts or ".." in parts:
            raise KeelError(f"refusing path {path!r}: it escapes the workspace")
        if parts[0].casefold() in _FORBIDDEN_ROOTS or any(p.casefold() == ".git" for p in parts):
            raise KeelError(f"refusing path {path!r}: .git/ and .keel/ are off limits")
        rel = "/".join(parts)
        self._check_resolved(path, self._workspace / rel)
        return rel

    def _check_resolved(self, path: str, target: Path) -> None:
        resolved = target.resolve()
        if resolved == self._workspace or not resolved.is_relative_to(self._workspace):
            raise KeelError(
                f"refusing path {path!r}: it resolves to {resolved}, outside the workspace"
            )
        root = resolved.relative_to(self._workspace).parts[0]
        if root.casefold() in _FORBIDDEN_ROOTS:
            raise KeelError(f"refusing path {path!r}: it resolves into {root}/")

    def _check_plain(self, rel: str) -> None:
        """Refuse ``rel`` when a component of it in the workspace is a symlink: the bundle was
        verified on plain files, and writing through a link would change another file than
        the one committed."""
        current = self._workspace
        parts = rel.split("/")
        for depth, part in enumerate(parts):
            current = current / part
            try:
                info = current.lstat()
            except (FileNotFoundError, NotADirectoryError):
                return
            shown = "/".join(parts[: depth + 1])
            if stat.S_ISLNK(info.st_mode):
                raise LedgerRefused(
                    f"refusing to write {rel}: {shown} is a symlink in the workspace, and the "
                    "bundle was verified on a plain file; remove the link and approve again"
                )

    def _read_sync(self, rel: str) -> bytes | None:
        try:
            return (self._workspace / rel).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as err:
            raise KeelError(f"cannot read {rel}: {err.strerror or err}") from err

    def _write_all(
        self, changes: _Changes, restore: _Changes, executable: Mapping[str, bool]
    ) -> None:
        """Write every change; on failure put back what was already replaced.

        ``restore`` is what each file held when the commit checked it against the bundle's
        base. Each file is checked again at the moment it is replaced: a user edit landing
        after the first check (while earlier files were written, or this one's temporary
        copy) refuses the commit with :class:`ConflictError` instead of being overwritten,
        whoever approved (a reviewer or the mode's policy).
        """
        done: list[str] = []
        deletes_first = sorted(changes, key=lambda rel: changes[rel] is not None)
        rel = ""
        try:
            for rel in deletes_first:
                if done:
                    self._faults.hit("ledger_some_files")
                content = changes[rel]
                target = self._workspace / rel
                _remove_stale_temporaries(target)
                expected = restore.get(rel)
                _write_atomic(
                    target,
                    content,
                    executable.get(rel),
                    self._faults,
                    unchanged=self._still(rel, expected),
                )
                done.append(rel)
        except _Moved:
            self._restore({path: restore.get(path) for path in done})
            raise ConflictError(
                f"the workspace changed while Keel wrote the bundle: {rel}", [rel]
            ) from None
        except OSError as err:
            self._restore({rel: restore.get(rel) for rel in done})
            raise LedgerRefused(
                f"cannot write {err.filename or 'a file'}: {err.strerror or err}"
            ) from err

    def _still(self, rel: str, expected: bytes | None) -> Callable[[], bool]:
        """A check that ``rel`` still holds ``expected`` (``None``: absent)."""
        return lambda: self._read_sync(rel) == expected

    def _restore(self, contents: _Changes) -> None:
        for rel, content in contents.items():
            try:
                _write_atomic(self._workspace / rel, content, None)
            except OSError as err:
                _log.error("could not restore %s after a failed commit: %s", rel, err)

    # ----------------------------------------------------------------- commit

    def _commit_sync(
        self,
        changes: _Changes,
        base: _Changes,
        message: str,
        trailers: Mapping[str, str],
        executable: Mapping[str, bool] | None = None,
    ) -> str:
        clean = {self._clean(path): content for path, content in changes.items()}
        bases = {self._clean(path): content for path, content in base.items()}
        body = _message(message, trailers)
        self._check_state()
        self._check_index_lock()
        for rel in clean:
            self._check_plain(rel)
        current = {rel: self._read_sync(rel) for rel in clean}
        conflicts = [
            rel for rel in sorted(clean) if current[rel] not in (bases.get(rel), clean[rel])
        ]
        if conflicts:
            raise ConflictError(
                "the workspace changed since the bundle was made: " + ", ".join(conflicts),
                conflicts,
            )
        self._write_all(clean, current, executable or {})
        self._faults.hit("ledger_before_commit")
        try:
            sha, entries = self._build_commit(clean, body, trailers)
        except (KeelError, OSError) as err:
            self._restore(current)
            if isinstance(err, KeelError):
                raise
            raise KeelError(f"cannot commit: {err.strerror or err}") from err
        self._sync_real_index(entries, sha)
        return sha

    def _build_commit(
        self, changes: _Changes, body: str, trailers: Mapping[str, str]
    ) -> tuple[str, list[_IndexEntry]]:
        """Commit ``changes`` (already in the workspace) on top of HEAD; move HEAD.

        The user's ``pre-commit`` hook sees the commit's index; ``prepare-commit-msg`` and
        ``commit-msg`` may rewrite the message as long as Keel's trailers survive; the commit
        is signed when ``commit.gpgsign`` is set. Any refusal raises before HEAD moves.
        """
        head = self._head()
        entries = self._hash_files(changes)
        hooks = _Hooks(self)
        with self._temp_index() as index:
            self._run(["read-tree", head] if head else ["read-tree", "--empty"], index=index)
            self._apply_entries(entries, index)
            tree = self._run(["write-tree"], index=index).strip()
            # Without a pre-commit hook nothing can have changed the index: no second tree.
            ran = hooks.run("pre-commit", index=index)
            if ran and self._run(["write-tree"], index=index).strip() != tree:
                raise LedgerRefused(
                    "the pre-commit hook changed what would be committed; Keel commits only "
                    "what was verified, so it refuses (make the hook leave the index alone)"
                )
            body = hooks.message(body, trailers, index)
        parents = ["-p", head] if head else []
        sign = ["-S"] if self._signing() else []
        args = ["commit-tree", tree, *parents, *sign, "-F", "-"]
        proc = self._exec(args, extra=self._identity, stdin=body.encode("utf-8"))
        if proc.returncode != 0 and sign:
            raise LedgerRefused(
                "commit.gpgsign is set and git could not sign the ledger commit; fix the "
                "signing setup (user.signingkey, gpg.format, the agent) or unset "
                "commit.gpgsign: Keel never commits unsigned when signing is configured",
                _text(proc.stderr).strip(),
            )
        if proc.returncode != 0:
            raise _failure(args, proc)
        sha = _text(proc.stdout).strip()
        old = head or "0" * len(sha)
        subject = body.split("\n", 1)[0]
        self._run(["update-ref", "-m", subject, "HEAD", sha, old])
        self._faults.hit("ledger_after_commit")
        hooks.run("post-commit", check=False)
        return sha, entries

    def _signing(self) -> bool:
        proc = self._exec(["config", "--type=bool", "--get", "commit.gpgsign"])
        return _text(proc.stdout).strip() == "true"

    def _hash_files(self, changes: _Changes) -> list[_IndexEntry]:
        """The index entry of every change, hashed from the approved bytes themselves (with
        the path's filters), never re-read from the workspace: what is committed is what was
        verified even if a file is swapped meanwhile."""
        entries: list[_IndexEntry] = []
        for rel, content in changes.items():
            gpath = self._layout.prefix + rel
            if content is None:
                entries.append((gpath, None))
                continue
            args = ["hash-object", "-w", "--stdin", f"--path={gpath}"]
            blob = self._run(args, stdin=content).strip()
            info = os.lstat(self._workspace / rel)
            if not stat.S_ISREG(info.st_mode):
                raise LedgerRefused(f"refusing to commit {rel}: it is no longer a plain file")
            mode = "100755" if info.st_mode & stat.S_IXUSR else "100644"
            entries.append((gpath, f"{mode},{blob}"))
        return entries

    def _apply_entries(self, entries: Sequence[_IndexEntry], index: Path | None) -> None:
        adds = [
            arg for gpath, info in entries if info for arg in ("--cacheinfo", f"{info},{gpath}")
        ]
        removes = [gpath for gpath, info in entries if info is None]
        if removes:
            self._run(["update-index", "--force-remove", "--", *removes], index=index)
        if adds:  # --replace: a file may replace a directory of the same name, and back
            self._run(["update-index", "--add", "--replace", *adds], index=index)

    def _settle_index_sync(self, paths: list[str]) -> None:
        head = self._head()
        if head is None or not paths:
            return
        gpaths = [self._layout.prefix + self._clean(path) for path in dict.fromkeys(paths)]
        # Usually nothing is out of step: one cheap comparison of the index with HEAD.
        stale = self._run(["diff-index", "--cached", "-z", "--name-only", head, "--", *gpaths])
        gpaths = [gpath for gpath in stale.split("\0") if gpath]
        if not gpaths:
            return
        listed = self._run(["ls-tree", "-z", head, "--", *gpaths]).split("\0")
        committed: list[tuple[str, str, str]] = []  # (repository path, mode, blob)
        for line in filter(None, listed):
            info, gpath = line.split("\t", 1)
            mode, _kind, blob = info.split()
            if (self._layout.toplevel / gpath).is_file():  # the user may have removed it
                committed.append((gpath, mode, blob))
        if not committed:
            return
        # One git call for every file: a resume of a long session settles hundreds.
        on_disk = self._run(["hash-object", "--", *(gpath for gpath, _, _ in committed)]).split()
        entries: list[_IndexEntry] = [
            (gpath, f"{mode},{blob}")
            for (gpath, mode, blob), found in zip(committed, on_disk, strict=True)
            if found == blob
        ]
        if entries:
            self._sync_real_index(entries, head)

    def _sync_real_index(self, entries: Sequence[_IndexEntry], sha: str) -> None:
        """Point the user's index at the committed blobs for exactly the committed paths."""
        try:
            self._apply_entries(entries, None)
        except KeelError as err:
            paths = " ".join(gpath for gpath, _ in entries)
            _log.warning(
                "committed %s but could not update the index (%s); run `git reset -q -- %s`",
                sha,
                err,
                paths,
            )
            return
        with contextlib.suppress(KeelError):  # only stat data; `git status` would do the same
            self._run(["update-index", "-q", "--refresh"])

    # ----------------------------------------------------------------- reading the ledger

    def _records_sync(self, limit: int | None, rev: str | None = None) -> list[_Record]:
        if limit is not None and limit <= 0:
            return []
        start = rev or self._head()
        if start is None:
            return []
        args = ["log", *_LOG_OPTIONS, f"--format={_LOG_FORMAT}"]
        if rev is None:
            args.append(f"--grep=^{TRAILER_BUNDLE}:")
        if limit is not None:
            args.append(f"--max-count={limit}")
        out = self._run([*args, start, "--"])
        records = [self._parse_record(chunk) for chunk in out.split(_RECORD)[1:]]
        return [record for record in records if record is not None]

    def _parse_record(self, chunk: str) -> _Record | None:
        head, _, tail = chunk.rpartition(_FIELD)
        sha, subject, timestamp, trailer_text = head.split(_FIELD, 3)
        trailers = _parse_trailers(trailer_text)
        if not trailers.get(TRAILER_BUNDLE):
            return None
        git_files = tuple(name for name in tail.lstrip("\0").removeprefix("\n").split("\0") if name)
        entry = LedgerEntry(
            sha=sha,
            title=subject.removeprefix(_SUBJECT_PREFIX),
            session=trailers.get(TRAILER_SESSION, ""),
            node=trailers.get(TRAILER_NODE, ""),
            bundle=trailers[TRAILER_BUNDLE],
            energy=trailers.get(TRAILER_ENERGY, ""),
            approved_by=trailers.get(TRAILER_APPROVED_BY, ""),
            timestamp=timestamp,
            files=tuple(self._to_workspace(path) for path in git_files),
            reverts=trailers.get(TRAILER_REVERTS) or None,
        )
        return _Record(entry=entry, git_files=git_files)

    def _to_workspace(self, gpath: str) -> str:
        prefix = self._layout.prefix
        return gpath.removeprefix(prefix) if prefix and gpath.startswith(prefix) else gpath

    def _record(self, entry: str) -> _Record:
        """The entry ``entry`` names; naming anything else is a usage error (ConfigError)."""
        if not entry or entry.startswith("-"):
            raise ConfigError(f"{entry!r} is not a Keel ledger entry")
        sha = self._verify(f"{entry}^{{commit}}")
        if sha is None:
            raise ConfigError(f"{entry} is not a Keel ledger entry (no such commit)")
        records = self._records_sync(1, rev=sha)
        if not records:
            raise ConfigError(
                f"{entry} is not a Keel ledger entry (it has no {TRAILER_BUNDLE} trailer)"
            )
        return records[0]

    def _show_sync(self, entry: str) -> tuple[LedgerEntry, str]:
        record = self._record(entry)
        patch = self._run(
            ["show", "--format=", "--no-color", "--no-ext-diff", "--no-renames", record.entry.sha]
        )
        return record.entry, patch

    # ----------------------------------------------------------------- rollback

    def _rollback_sync(self, entry: str) -> str:
        record = self._record(entry)
        sha = record.entry.sha
        head = self._head()
        if head is None or not self._is_ancestor(sha, head):
            raise ConfigError(f"{entry} is not in the history of the current branch")
        parent = self._verify(f"{sha}^1")
        changes: dict[str, bytes | None] = {}
        base: dict[str, bytes | None] = {}
        executable: dict[str, bool] = {}
        conflicts: list[tuple[str, str]] = []
        for gpath in record.git_files:
            rel = self._rollback_path(gpath)
            ours, at_head = self._blob(sha, gpath), self._blob(head, gpath)
            if _content(ours) != _content(at_head):
                conflicts.append((rel, "changed by a later commit"))
            elif self._read_sync(rel) != _content(at_head):
                conflicts.append((rel, "edited in the workspace"))
            before = self._blob(parent, gpath) if parent else None
            changes[rel], base[rel] = _content(before), _content(at_head)
            executable[rel] = before is not None and before[0] == "100755"
        if conflicts:
            paths = [rel for rel, _ in conflicts]
            reverter = self._reverted_by(sha, head)
            if reverter is not None:
                raise ConflictError(
                    f"cannot roll back {sha[:12]}: already reverted by {reverter[:12]}", paths
                )
            detail = "; ".join(f"{rel} ({why})" for rel, why in conflicts)
            raise ConflictError(f"cannot roll back {sha[:12]}: {detail}", paths)
        trailers = _revert_trailers(record.entry, changes)
        message = f"{_SUBJECT_PREFIX}revert {record.entry.title}"
        return self._commit_sync(changes, base, message, trailers, executable)

    def _reverted_by(self, sha: str, head: str) -> str | None:
        """The newest commit up to ``head`` whose ``Keel-Reverts`` trailer names ``sha``.

        Asked only when a rollback is refused: a revert that was itself reverted leaves the
        files as the entry made them, and then rolling the entry back again is allowed.
        """
        pattern = f"--grep=^{TRAILER_REVERTS}: {sha}$"
        out = self._run(["log", "--format=%H", "--max-count=1", pattern, head, "--"])
        return out.strip() or None

    def _rollback_path(self, gpath: str) -> str:
        prefix = self._layout.prefix
        if prefix and not gpath.startswith(prefix):
            raise KeelError(f"the entry changed {gpath}, outside this workspace ({prefix})")
        return self._clean(gpath.removeprefix(prefix))

    def _is_ancestor(self, ancestor: str, descendant: str) -> bool:
        args = ["merge-base", "--is-ancestor", ancestor, descendant]
        proc = self._exec(args)
        if proc.returncode not in (0, 1):
            raise _failure(args, proc)
        return proc.returncode == 0

    def _blob(self, commit: str, gpath: str) -> tuple[str, bytes] | None:
        """(mode, content) of ``gpath`` in ``commit``, or ``None`` when it is not a file there."""
        listing = self._run(["ls-tree", "-z", "--full-tree", commit, "--", gpath])
        for item in listing.split("\0"):
            meta, _, name = item.partition("\t")
            fields = meta.split()
            if name == gpath and len(fields) == 3 and fields[1] == "blob":
                return fields[0], self._run_bytes(["cat-file", "blob", fields[2]])
        return None

    # ----------------------------------------------------------------- export

    def _export_sync(self, dest: Path) -> None:
        try:
            dest.mkdir(parents=True, exist_ok=True)
            if any(dest.iterdir()):
                raise KeelError(f"cannot export into {dest}: the directory is not empty")
        except OSError as err:
            raise KeelError(f"cannot export into {dest}: {err.strerror or err}") from err
        head = self._head()
        if head is None:
            return
        prefix = self._layout.prefix.rstrip("/")
        tree = self._verify(f"{head}:{prefix}") if prefix else head
        if tree is None:
            return
        target = str(dest.resolve()) + os.sep
        with self._temp_index() as index:
            self._run(["read-tree", tree], index=index)
            self._run(["checkout-index", "--all", "--force", f"--prefix={target}"], index=index)


# --------------------------------------------------------------------- the user's hooks


class _Hooks:
    """The user's commit hooks, run for a ledger commit as ``git commit`` runs them.

    Where they are: ``core.hooksPath`` when set, else ``.git/hooks``. A hook file that is not
    executable is ignored, as git ignores it, with a warning in the log. Each hook runs at
    the repository's top level with the scrubbed environment (no secret reaches it), its
    stdin closed, and :data:`HOOK_TIMEOUT_S` to finish.
    """

    def __init__(self, ledger: GitLedger) -> None:
        self._ledger = ledger
        layout = ledger._layout
        # Asked without Keel's own hooksPath override: this is the user's setting.
        env = git_environment({"GIT_DIR": str(layout.git_dir)})
        try:
            proc = subprocess.run(
                ["git", "rev-parse", "--git-path", "hooks"],
                cwd=layout.toplevel,
                env=env,
                capture_output=True,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except OSError as err:
            raise KeelError(f"cannot run git: {err.strerror or err}") from err
        if proc.returncode != 0:
            raise _failure(["rev-parse"], proc)
        self._dir = layout.toplevel / _text(proc.stdout).strip()

    def _find(self, name: str) -> Path | None:
        path = self._dir / name
        if not path.is_file():
            return None
        if not os.access(path, os.X_OK):
            _log.warning(
                "the %s hook %s is not executable; ignored for the ledger commit, as git "
                "ignores it (chmod +x it to have it run)",
                name,
                path,
            )
            return None
        return path

    def run(self, name: str, *args: str, index: Path | None = None, check: bool = True) -> bool:
        """Run the hook ``name`` if there is one; whether it ran."""
        hook = self._find(name)
        if hook is None:
            return False
        layout = self._ledger._layout
        env = git_environment({"GIT_INDEX_FILE": str(index or layout.index), "GIT_EDITOR": ":"})
        try:
            returncode, raw, timed_out = _run_hook([str(hook), *args], layout.toplevel, env)
        except OSError as err:
            if not check:
                return False
            raise LedgerRefused(
                f"cannot run the {name} hook {hook}: {err.strerror or err}"
            ) from err
        output = _text(raw).strip()[-_HOOK_OUTPUT_CHARS:]
        if timed_out:
            message = f"the {name} hook did not finish in {HOOK_TIMEOUT_S:g} s"
            if not check:
                _log.warning("%s", message)
                return True
            raise LedgerRefused(f"{message}; the ledger commit is refused", output)
        if returncode == 0:
            return True
        if not check:  # git ignores post-commit's status too
            _log.warning("the %s hook exited %s: %s", name, returncode, output)
            return True
        raise LedgerRefused(
            f"the {name} hook refused the ledger commit (exit status {returncode})"
            + (f": {output}" if output else ""),
            output,
        )

    def message(self, body: str, trailers: Mapping[str, str], index: Path) -> str:
        """``body`` after ``prepare-commit-msg`` and ``commit-msg``; their rewrite is kept
        when the subject and every Keel trailer survive it, refused otherwise."""
        hooks = [h for h in ("prepare-commit-msg", "commit-msg") if self._find(h)]
        if not hooks:
            return body
        path = self._ledger._layout.git_dir / "COMMIT_EDITMSG"
        path.write_text(body, encoding="utf-8")
        for name in hooks:
            extra = ("message",) if name == "prepare-commit-msg" else ()
            self.run(name, str(path), *extra, index=index)
        rewritten = path.read_text(encoding="utf-8", errors="surrogateescape")
        if rewritten == body:
            return body
        cleaned = self._ledger._run(
            ["stripspace"], stdin=rewritten.encode("utf-8", "surrogateescape")
        )
        parsed = _parse_trailers(
            self._ledger._run(
                ["interpret-trailers", "--parse"], stdin=cleaned.encode("utf-8", "surrogateescape")
            )
        )
        lost = [key for key, value in trailers.items() if parsed.get(key) != value.strip()]
        if lost or not cleaned.startswith(body.split("\n", 1)[0]):
            what = ", ".join(lost) if lost else "the subject"
            raise LedgerRefused(
                f"the {' and '.join(hooks)} hook rewrote the ledger commit's message and lost "
                f"{what}; Keel needs its subject and trailers intact to read the ledger back",
                cleaned,
            )
        return cleaned


def _run_hook(argv: list[str], cwd: Path, env: Mapping[str, str]) -> tuple[int, bytes, bool]:
    """(exit status, output, timed out) of one hook, run in its own process group so that a
    hook over its time is killed with everything it started (nothing keeps its pipe open)."""
    with subprocess.Popen(
        argv,
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    ) as proc:
        try:
            out, _ = proc.communicate(timeout=HOOK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            return proc.returncode, out, True
    return proc.returncode, out, False


# --------------------------------------------------------------------- helpers


def _ensure_excluded(exclude: Path) -> None:
    """Add ``.keel/`` to ``info/exclude`` once."""
    try:
        text = exclude.read_text(encoding="utf-8") if exclude.exists() else ""
        if any(line.strip() in _EXCLUDE_LINES for line in text.splitlines()):
            return
        exclude.parent.mkdir(parents=True, exist_ok=True)
        separator = "" if not text or text.endswith("\n") else "\n"
        with exclude.open("a", encoding="utf-8") as fh:
            fh.write(f"{separator}# Keel's session store\n.keel/\n")
    except OSError as err:
        raise KeelError(f"cannot update {exclude}: {err.strerror or err}") from err


def _remove_stale_temporaries(target: Path) -> None:
    """Temporary files a killed Keel left beside ``target`` (the write never happened)."""
    for stale in stale_temporaries(target):
        stale.unlink(missing_ok=True)


class _Moved(Exception):
    """A file changed between the commit's check and its replacement."""


def _write_atomic(
    target: Path,
    content: bytes | None,
    executable: bool | None,
    faults: FaultPoint | None = None,
    *,
    unchanged: Callable[[], bool] | None = None,
) -> None:
    """Replace ``target`` with ``content`` (``None``: delete) so it is never half written.

    ``executable`` ``None`` keeps an existing file's mode; new files get the umask's default.
    ``unchanged``, asked right before the file is replaced, says it still holds what was
    checked; when it does not, nothing is replaced and :class:`_Moved` is raised.
    """
    if content is None:
        if unchanged is not None and not unchanged():
            raise _Moved(target)
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        fsync_directory(target.parent)
        return

    def check() -> None:
        if unchanged is not None and not unchanged():
            raise _Moved(target)

    def midway() -> None:
        if faults is not None:
            faults.hit("ledger_mid_file")

    write_atomically(
        target,
        content,
        executable=executable,
        midway=midway if faults is not None else None,
        before_replace=check,
    )


def _message(message: str, trailers: Mapping[str, str]) -> str:
    """``keel: <title>``, a blank line, then one ``Key: value`` line per trailer, in order."""
    text = message.strip()
    if not text:
        raise KeelError("a ledger commit needs a message")
    if not text.startswith(_SUBJECT_PREFIX):
        text = _SUBJECT_PREFIX + text
    lines = []
    for key, value in trailers.items():
        if not key or not all(c.isascii() and (c.isalnum() or c == "-") for c in key):
            raise KeelError(f"invalid trailer key {key!r}")
        if not value.strip() or "\n" in value or "\r" in value:
            raise KeelError(f"invalid value for trailer {key}: {value!r}")
        lines.append(f"{key}: {value.strip()}")
    return text + ("\n\n" + "\n".join(lines) if lines else "") + "\n"


def _parse_trailers(text: str) -> dict[str, str]:
    trailers: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and key.strip() not in trailers:
            trailers[key.strip()] = value.strip()
    return trailers


def _content(blob: tuple[str, bytes] | None) -> bytes | None:
    return None if blob is None else blob[1]


def content_hash(changes: Mapping[str, bytes | None]) -> str:
    """sha256 over the sorted (path, content) pairs; a deletion hashes differently from empty."""
    digest = hashlib.sha256()
    for path in sorted(changes):
        content = changes[path]
        digest.update(path.encode("utf-8") + b"\0")
        if content is None:
            digest.update(b"-\0")
        else:
            digest.update(b"+" + str(len(content)).encode() + b"\0" + content)
    return digest.hexdigest()


def _revert_trailers(entry: LedgerEntry, changes: Mapping[str, bytes | None]) -> dict[str, str]:
    trailers = {
        TRAILER_SESSION: entry.session,
        TRAILER_NODE: entry.node,
        TRAILER_BUNDLE: content_hash(changes),
        TRAILER_ENERGY: entry.energy,
        TRAILER_APPROVED_BY: "user",
        TRAILER_REVERTS: entry.sha,
    }
    return {key: value for key, value in trailers.items() if value}


__all__ = ["GitLedger", "content_hash", "git_command", "git_environment"]
