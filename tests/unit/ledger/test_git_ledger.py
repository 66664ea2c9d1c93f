"""The git ledger against real git: commits contain exactly the approved files, the user's
staged and unstaged work survives, the ledger reads back from git, rollback never rewrites
history, and paths that escape the workspace are refused.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from keel.engine.ports import ConfigError, ConflictError, KeelError
from keel.ledger import GitLedger, content_hash

TRAILERS = {
    "Keel-Session": "s-1",
    "Keel-Node": "n1",
    "Keel-Bundle": "b" * 64,
    "Keel-Energy": "v=0.000 syn=0 str=0 log=0 boot=0 sheaf=0",
    "Keel-Approved-By": "user",
}


@pytest.fixture(autouse=True)
def _hermetic_git(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No global or system git config, so a developer's settings cannot change the outcome."""
    home = tmp_path_factory.mktemp("home")
    (home / "gitconfig").write_text("")
    (home / ".gitconfig").write_text("")
    monkeypatch.setenv("HOME", str(home))  # the ledger's git inherits no GIT_* variable
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)


def git(cwd: Path, *args: str, input_text: str | None = None) -> str:
    """Run git as the user would (with an identity for the user's own commits)."""
    identity = ["-c", "user.name=User", "-c", "user.email=user@example.com"]
    done = subprocess.run(
        ["git", *identity, *args],
        cwd=cwd,
        input=input_text,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def git_ok(cwd: Path, *args: str) -> bool:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True).returncode == 0


def head(cwd: Path) -> str:
    return git(cwd, "rev-parse", "HEAD").strip()


def committed_files(cwd: Path, rev: str = "HEAD") -> list[str]:
    out = git(cwd, "show", "--name-only", "--no-renames", "--format=", rev)
    return [line for line in out.splitlines() if line]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """A repository with one user commit holding ``a.txt`` and ``b.txt``."""
    root = tmp_path / "ws"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "a.txt").write_text("a1\n")
    (root / "b.txt").write_text("b1\n")
    git(root, "add", "a.txt", "b.txt")
    git(root, "commit", "-q", "-m", "user: initial")
    return root


async def add_file(ledger: GitLedger, path: str, content: bytes, title: str = "add") -> str:
    base = {path: await ledger.read(path)}
    return await ledger.commit({path: content}, base, f"keel: {title}", TRAILERS)


# --------------------------------------------------------------------- initialisation


async def test_fresh_directory_is_initialised_and_keel_excluded(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    root.mkdir()
    ledger = await GitLedger.open(root)
    assert (root / ".git").is_dir()
    GitLedger(root)  # opening again must not add the exclude line twice
    exclude = (root / ".git" / "info" / "exclude").read_text()
    assert exclude.splitlines().count(".keel/") == 1

    sha = await ledger.commit({"x.py": b"print(1)\n"}, {"x.py": None}, "keel: first", TRAILERS)
    (root / ".keel").mkdir()
    (root / ".keel" / "keel.db").write_bytes(b"db")
    assert head(root) == sha
    assert git(root, "symbolic-ref", "--short", "HEAD").strip() == "main"
    assert committed_files(root) == ["x.py"]
    assert git(root, "status", "--porcelain") == ""


async def test_not_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeelError, match="not a directory"):
        GitLedger(tmp_path / "missing")


async def test_reading_only_never_makes_a_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(ConfigError, match="not in a git repository"):
        await GitLedger.open(plain, create=False)
    assert list(plain.iterdir()) == []


async def test_reading_only_uses_an_existing_repository_as_it_is(ws: Path) -> None:
    exclude = ws / ".git" / "info" / "exclude"
    before = exclude.read_text() if exclude.exists() else None
    ledger = await GitLedger.open(ws, create=False)
    assert await ledger.entries() == []
    assert (exclude.read_text() if exclude.exists() else None) == before


def logging_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``git`` first on PATH that appends its arguments to a log, then runs the real one."""
    real = subprocess.run(["which", "git"], capture_output=True, text=True, check=True)
    shim, log = tmp_path / "shim", tmp_path / "git-calls.log"
    shim.mkdir()
    (shim / "git").write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real.stdout.strip()} "$@"\n')
    (shim / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}{os.pathsep}{os.environ['PATH']}")
    return log


async def test_opening_an_existing_repository_takes_one_git_call(
    ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every command that reads the ledger opens it: one ``rev-parse`` finds the work tree,
    the repository, its index and exclude file (docs/benchmarks.md, start-up)."""
    log = logging_git(tmp_path, monkeypatch)
    ledger = await GitLedger.open(ws, create=False)
    assert len(log.read_text().splitlines()) == 1
    assert await ledger.entries() == []


async def test_inside_the_git_directory_is_refused_with_gits_reason(ws: Path) -> None:
    with pytest.raises(KeelError, match=r"cannot use .* as a git workspace: .*work tree"):
        await GitLedger.open(ws / ".git", create=False)
    with pytest.raises(KeelError, match=r"cannot use .* as a git workspace"):
        await GitLedger.open(ws / ".git")


async def test_a_new_repository_is_made_then_found(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    (plain / "sub").mkdir(parents=True)
    ledger = await GitLedger.open(plain)
    assert (plain / ".git").is_dir() and ledger.workspace == plain.resolve()
    assert ".keel/" in (plain / ".git" / "info" / "exclude").read_text().splitlines()


# --------------------------------------------------------------------- commit


async def test_commit_keeps_users_staged_unstaged_and_untracked_work(ws: Path) -> None:
    (ws / "a.txt").write_text("a2 staged\n")
    git(ws, "add", "a.txt")
    (ws / "b.txt").write_text("b2 unstaged\n")
    (ws / "c.txt").write_text("c untracked\n")
    staged_a = git(ws, "diff", "--cached", "--", "a.txt")
    unstaged_b = git(ws, "diff", "--", "b.txt")
    before = head(ws)

    ledger = GitLedger(ws)
    sha = await add_file(ledger, "d.txt", b"d1\n", "add d")

    assert git(ws, "rev-parse", f"{sha}^").strip() == before
    assert committed_files(ws, sha) == ["d.txt"]
    assert git(ws, "diff", "--cached", "--", "a.txt") == staged_a
    assert git(ws, "diff", "--cached", "--name-only").split() == ["a.txt"]
    assert git(ws, "diff", "--", "b.txt") == unstaged_b
    assert git(ws, "diff", "--name-only").split() == ["b.txt"]
    assert (ws / "b.txt").read_text() == "b2 unstaged\n"
    assert (ws / "c.txt").read_text() == "c untracked\n"
    assert (ws / "d.txt").read_bytes() == b"d1\n"
    status = sorted(git(ws, "status", "--porcelain").splitlines())
    assert status == [" M b.txt", "?? c.txt", "M  a.txt"]
    assert git(ws, "diff-files", "--name-only").split() == ["b.txt"]  # d.txt not even stat-dirty
    assert git_ok(ws, "fsck", "--strict")


async def test_commit_on_unborn_branch_keeps_staged_files(tmp_path: Path) -> None:
    root = tmp_path / "unborn"
    root.mkdir()
    git(root, "init", "-q", "-b", "trunk")
    (root / "staged.txt").write_text("staged\n")
    git(root, "add", "staged.txt")
    ledger = GitLedger(root)
    sha = await add_file(ledger, "d.txt", b"d\n")
    assert git(root, "rev-parse", "refs/heads/trunk").strip() == sha
    assert committed_files(root) == ["d.txt"]
    assert git(root, "status", "--porcelain").splitlines() == ["A  staged.txt"]


async def test_trailers_parse_as_git_trailers(ws: Path) -> None:
    ledger = GitLedger(ws)
    sha = await add_file(ledger, "d.txt", b"d\n", "write the d module")
    message = git(ws, "log", "-1", "--format=%B", sha)
    assert message.splitlines()[0] == "keel: write the d module"
    parsed = git(ws, "interpret-trailers", "--parse", input_text=message)
    assert parsed.splitlines() == [f"{key}: {value}" for key, value in TRAILERS.items()]
    author = git(ws, "log", "-1", "--format=%an <%ae>|%cn <%ce>", sha).strip()
    assert author == "Keel <keel@localhost>|Keel <keel@localhost>"


async def test_conflict_refuses_and_writes_nothing(ws: Path) -> None:
    ledger = GitLedger(ws)
    (ws / "a.txt").write_text("user edit\n")
    before = head(ws)
    changes = {"new.txt": b"new\n", "a.txt": b"bundle\n"}
    base = {"new.txt": None, "a.txt": b"a1\n"}
    with pytest.raises(ConflictError) as caught:
        await ledger.commit(changes, base, "keel: x", TRAILERS)
    assert caught.value.paths == ["a.txt"]
    assert not (ws / "new.txt").exists()
    assert (ws / "a.txt").read_text() == "user edit\n"
    assert head(ws) == before


class EditAt:
    """A fault point double: the user's edit lands at ``point`` (once), mid-commit."""

    def __init__(self, point: str, path: Path, text: str) -> None:
        self.point, self.path, self.text, self.done = point, path, text, False

    def hit(self, point: str) -> None:
        if point == self.point and not self.done:
            self.path.write_text(self.text)
            self.done = True


@pytest.mark.parametrize(
    ("point", "edited"),
    [
        ("ledger_some_files", "b.txt"),  # after a.txt was written, before b.txt
        ("ledger_mid_file", "a.txt"),  # while a.txt's temporary copy is written
    ],
)
async def test_an_edit_landing_while_the_ledger_writes_is_never_overwritten(
    ws: Path, point: str, edited: str
) -> None:
    user = EditAt(point, ws / edited, "the user's edit\n")
    ledger = GitLedger(ws, faults=user)
    before = head(ws)
    changes = {"a.txt": b"bundle a\n", "b.txt": b"bundle b\n"}
    base = {"a.txt": b"a1\n", "b.txt": b"b1\n"}
    with pytest.raises(ConflictError, match="changed while Keel wrote") as caught:
        await ledger.commit(changes, base, "keel: x", TRAILERS)
    assert user.done and caught.value.paths == [edited]
    assert (ws / edited).read_text() == "the user's edit\n"
    other = "a.txt" if edited == "b.txt" else "b.txt"
    assert (ws / other).read_text() == base[other].decode()  # put back, nothing half done
    assert head(ws) == before
    assert not list(ws.glob(".*.keel-*.tmp"))


async def test_conflict_when_file_appeared(ws: Path) -> None:
    ledger = GitLedger(ws)
    (ws / "new.txt").write_text("the user made it\n")
    with pytest.raises(ConflictError):
        await ledger.commit({"new.txt": b"bundle\n"}, {"new.txt": None}, "keel: x", TRAILERS)
    assert (ws / "new.txt").read_text() == "the user made it\n"


async def test_retry_after_files_were_already_written(ws: Path) -> None:
    """A crash between writing and committing leaves the bundle's bytes; a retry commits them."""
    ledger = GitLedger(ws)
    (ws / "a.txt").write_bytes(b"bundle\n")
    sha = await ledger.commit({"a.txt": b"bundle\n"}, {"a.txt": b"a1\n"}, "keel: x", TRAILERS)
    assert committed_files(ws, sha) == ["a.txt"]
    assert git(ws, "status", "--porcelain") == ""


async def test_delete_and_nested_create(ws: Path) -> None:
    ledger = GitLedger(ws)
    changes = {"a.txt": None, "pkg/sub/mod.py": b"x = 1\n"}
    base = {"a.txt": b"a1\n", "pkg/sub/mod.py": None}
    sha = await ledger.commit(changes, base, "keel: restructure", TRAILERS)
    assert not (ws / "a.txt").exists()
    assert (ws / "pkg" / "sub" / "mod.py").read_bytes() == b"x = 1\n"
    assert sorted(committed_files(ws, sha)) == ["a.txt", "pkg/sub/mod.py"]
    assert "a.txt" not in git(ws, "ls-tree", "-r", "--name-only", "HEAD").split()
    assert git(ws, "status", "--porcelain") == ""


async def test_existing_executable_bit_is_kept(ws: Path) -> None:
    script = ws / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    git(ws, "add", "run.sh")
    git(ws, "commit", "-q", "-m", "user: script")
    ledger = GitLedger(ws)
    await ledger.commit(
        {"run.sh": b"#!/bin/sh\necho hi\n"}, {"run.sh": b"#!/bin/sh\n"}, "x", TRAILERS
    )
    assert script.stat().st_mode & stat.S_IXUSR
    assert git(ws, "ls-tree", "HEAD", "run.sh").split()[0] == "100755"
    assert git(ws, "status", "--porcelain") == ""


@pytest.mark.parametrize(
    "path", ["../x", "/etc/x", ".git/config", ".keel/x", "sub/../../x", "a/.git/hooks/x", ""]
)
async def test_escaping_paths_are_refused(ws: Path, path: str) -> None:
    ledger = GitLedger(ws)
    before = head(ws)
    with pytest.raises(KeelError):
        await ledger.commit({path: b"evil"}, {path: None}, "keel: x", TRAILERS)
    assert head(ws) == before
    assert not (ws / ".keel" / "x").exists()


async def test_symlinked_directory_outside_is_refused(ws: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (ws / "link").symlink_to(outside, target_is_directory=True)
    (ws / "gitlink").symlink_to(ws / ".git", target_is_directory=True)
    ledger = GitLedger(ws)
    for path in ("link/x", "gitlink/config"):
        with pytest.raises(KeelError, match="resolves"):
            await ledger.commit({path: b"evil"}, {path: None}, "keel: x", TRAILERS)
        with pytest.raises(KeelError):
            await ledger.read(path)
    assert list(outside.iterdir()) == []


async def test_read(ws: Path) -> None:
    ledger = GitLedger(ws)
    assert await ledger.read("a.txt") == b"a1\n"
    assert await ledger.read("./a.txt") == b"a1\n"
    assert await ledger.read("nope/missing.txt") is None


async def test_invalid_trailer_is_refused(ws: Path) -> None:
    ledger = GitLedger(ws)
    bad = {**TRAILERS, "Keel-Energy": "line\nbreak"}
    with pytest.raises(KeelError, match="trailer"):
        await ledger.commit({"d.txt": b"d"}, {"d.txt": None}, "keel: x", bad)
    assert not (ws / "d.txt").exists()


# --------------------------------------------------------------------- index.lock


async def test_stale_index_lock_is_removed(ws: Path) -> None:
    lock = ws / ".git" / "index.lock"
    lock.write_bytes(b"")
    old = time.time() - 120
    os.utime(lock, (old, old))
    ledger = GitLedger(ws, stale_lock_s=60)
    await add_file(ledger, "d.txt", b"d\n")
    assert not lock.exists()
    assert git(ws, "status", "--porcelain") == ""


async def test_fresh_index_lock_refuses_before_writing(ws: Path) -> None:
    lock = ws / ".git" / "index.lock"
    lock.write_bytes(b"")
    ledger = GitLedger(ws, stale_lock_s=60)
    with pytest.raises(KeelError, match=r"index\.lock"):
        await add_file(ledger, "d.txt", b"d\n")
    assert lock.exists()
    assert not (ws / "d.txt").exists()


# --------------------------------------------------------------------- reading the ledger


async def test_entries_read_back_from_git(ws: Path) -> None:
    ledger = GitLedger(ws)
    first = await add_file(ledger, "d.txt", b"d\n", "add d")
    (ws / "user.txt").write_text("u\n")
    git(ws, "add", "user.txt")
    git(ws, "commit", "-q", "-m", "user: not a ledger entry")
    trailers = {**TRAILERS, "Keel-Node": "n2", "Keel-Approved-By": "-y"}
    second = await ledger.commit(
        {"e.txt": b"e\n", "a.txt": None}, {"e.txt": None, "a.txt": b"a1\n"}, "keel: add e", trailers
    )

    entries = await ledger.entries()
    assert [e.sha for e in entries] == [second, first]
    newest = entries[0]
    assert newest.title == "add e"
    assert (newest.session, newest.node, newest.approved_by) == ("s-1", "n2", "-y")
    assert newest.bundle == TRAILERS["Keel-Bundle"]
    assert newest.energy == TRAILERS["Keel-Energy"]
    assert sorted(newest.files) == ["a.txt", "e.txt"]
    assert newest.reverts is None
    assert newest.timestamp[:4].isdigit() and "T" in newest.timestamp
    assert entries[1].files == ("d.txt",)
    assert [e.sha for e in await ledger.entries(limit=1)] == [second]
    assert await ledger.entries(limit=0) == []


async def test_entries_without_head(tmp_path: Path) -> None:
    ledger = GitLedger(tmp_path)
    assert await ledger.entries() == []


async def test_show_returns_entry_and_patch(ws: Path) -> None:
    ledger = GitLedger(ws)
    sha = await add_file(ledger, "d.txt", b"hello\n", "add d")
    entry, patch = await ledger.show(sha[:8])
    assert entry.sha == sha
    assert "+++ b/d.txt" in patch and "+hello" in patch

    with pytest.raises(ConfigError, match="is not a Keel ledger entry"):
        await ledger.show(git(ws, "rev-parse", "HEAD^").strip())
    with pytest.raises(ConfigError, match="is not a Keel ledger entry"):
        await ledger.show("no-such-thing")
    with pytest.raises(ConfigError, match="is not a Keel ledger entry"):
        await ledger.show("--all")


# --------------------------------------------------------------------- rollback


async def test_rollback_makes_a_new_commit_restoring_the_parent(ws: Path) -> None:
    ledger = GitLedger(ws)
    changes = {"a.txt": b"a2\n", "new.txt": b"new\n", "b.txt": None}
    base = {"a.txt": b"a1\n", "new.txt": None, "b.txt": b"b1\n"}
    sha = await ledger.commit(changes, base, "keel: change things", TRAILERS)
    (ws / "untracked.txt").write_text("keep\n")

    revert = await ledger.rollback(sha[:10])

    assert (ws / "a.txt").read_text() == "a1\n"
    assert (ws / "b.txt").read_text() == "b1\n"
    assert not (ws / "new.txt").exists()
    assert (ws / "untracked.txt").read_text() == "keep\n"
    assert git(ws, "rev-parse", f"{revert}^").strip() == sha
    assert git_ok(ws, "merge-base", "--is-ancestor", sha, revert)
    assert git(ws, "status", "--porcelain").splitlines() == ["?? untracked.txt"]

    latest = (await ledger.entries())[0]
    assert latest.sha == revert
    assert latest.title == "revert change things"
    assert latest.reverts == sha
    assert (latest.session, latest.node) == ("s-1", "n1")
    assert latest.energy == TRAILERS["Keel-Energy"]
    assert latest.approved_by == "user"
    expected = {"a.txt": b"a1\n", "new.txt": None, "b.txt": b"b1\n"}
    assert latest.bundle == content_hash(expected)
    assert sorted(latest.files) == ["a.txt", "b.txt", "new.txt"]
    message = git(ws, "log", "-1", "--format=%B", revert)
    parsed = git(ws, "interpret-trailers", "--parse", input_text=message)
    assert f"Keel-Reverts: {sha}" in parsed.splitlines()
    assert git_ok(ws, "fsck", "--strict")


async def test_rollback_refuses_user_edit(ws: Path) -> None:
    ledger = GitLedger(ws)
    sha = await add_file(ledger, "d.txt", b"d\n")
    (ws / "d.txt").write_text("user edit\n")
    with pytest.raises(ConflictError, match="edited in the workspace") as caught:
        await ledger.rollback(sha)
    assert caught.value.paths == ["d.txt"]
    assert (ws / "d.txt").read_text() == "user edit\n"
    assert head(ws) == sha


async def test_rollback_refuses_when_a_later_commit_changed_the_file(ws: Path) -> None:
    ledger = GitLedger(ws)
    first = await add_file(ledger, "d.txt", b"d1\n")
    await add_file(ledger, "d.txt", b"d2\n")
    with pytest.raises(ConflictError, match="later commit"):
        await ledger.rollback(first)
    with pytest.raises(ConfigError, match="is not a Keel ledger entry"):
        await ledger.rollback("HEAD~2")
    with pytest.raises(ConfigError, match="is not a Keel ledger entry"):
        await ledger.rollback("deadbeef")


async def test_rolling_back_twice_says_it_was_already_reverted(ws: Path) -> None:
    ledger = GitLedger(ws)
    sha = await add_file(ledger, "d.txt", b"d1\n")
    revert = await ledger.rollback(sha)
    with pytest.raises(ConflictError) as caught:
        await ledger.rollback(sha[:10])
    assert str(caught.value) == f"cannot roll back {sha[:12]}: already reverted by {revert[:12]}"
    assert caught.value.paths == ["d.txt"]
    assert head(ws) == revert


async def test_an_entry_whose_revert_was_reverted_can_be_rolled_back_again(ws: Path) -> None:
    ledger = GitLedger(ws)
    sha = await add_file(ledger, "d.txt", b"d1\n")
    await ledger.rollback(await ledger.rollback(sha))
    assert (ws / "d.txt").read_bytes() == b"d1\n"
    await ledger.rollback(sha)
    assert not (ws / "d.txt").exists()


async def test_rollback_of_the_root_commit_deletes_its_files(tmp_path: Path) -> None:
    ledger = GitLedger(tmp_path)
    sha = await add_file(ledger, "only.txt", b"x\n")
    await ledger.rollback(sha)
    assert not (tmp_path / "only.txt").exists()
    assert git(tmp_path, "ls-tree", "HEAD").strip() == ""


# --------------------------------------------------------------------- export


async def test_export_reproduces_head(ws: Path, tmp_path: Path) -> None:
    script = ws / "bin" / "run.sh"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    (ws / "link.txt").symlink_to("a.txt")
    git(ws, "add", "bin/run.sh", "link.txt")
    git(ws, "commit", "-q", "-m", "user: more")
    (ws / "a.txt").write_text("uncommitted\n")
    (ws / "c.txt").write_text("untracked\n")
    index_before = (ws / ".git" / "index").read_bytes()

    dest = tmp_path / "export"
    dest.mkdir()
    await GitLedger(ws).export(dest)

    names = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))
    assert names == ["a.txt", "b.txt", "bin", "bin/run.sh", "link.txt"]
    assert (dest / "a.txt").read_text() == "a1\n"
    assert (dest / "bin" / "run.sh").stat().st_mode & stat.S_IXUSR
    assert not (dest / "b.txt").stat().st_mode & stat.S_IXUSR
    assert (dest / "link.txt").is_symlink() and os.readlink(dest / "link.txt") == "a.txt"
    assert (ws / ".git" / "index").read_bytes() == index_before
    assert (ws / "a.txt").read_text() == "uncommitted\n"


async def test_export_without_head_leaves_dest_empty(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    await GitLedger(root).export(dest)
    assert list(dest.iterdir()) == []


async def test_export_refuses_non_empty_dest(ws: Path, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "x").write_text("x")
    with pytest.raises(KeelError, match="not empty"):
        await GitLedger(ws).export(dest)


# --------------------------------------------------------------------- workspace in a subdirectory


async def test_workspace_inside_a_larger_repository(ws: Path, tmp_path: Path) -> None:
    sub = ws / "pkg"
    sub.mkdir()
    (sub / "mod.py").write_text("x = 1\n")
    git(ws, "add", "pkg/mod.py")
    git(ws, "commit", "-q", "-m", "user: pkg")
    ledger = GitLedger(sub)
    assert not (sub / ".git").exists()

    sha = await ledger.commit(
        {"mod.py": b"x = 2\n"}, {"mod.py": b"x = 1\n"}, "keel: bump", TRAILERS
    )
    assert committed_files(ws, sha) == ["pkg/mod.py"]
    assert (await ledger.entries())[0].files == ("mod.py",)

    dest = tmp_path / "sub-export"
    await ledger.export(dest)
    assert sorted(p.name for p in dest.iterdir()) == ["mod.py"]
    assert (dest / "mod.py").read_text() == "x = 2\n"

    await ledger.rollback(sha)
    assert (sub / "mod.py").read_text() == "x = 1\n"
    assert git(ws, "status", "--porcelain") == ""


async def test_concurrent_commits_are_serialised(ws: Path) -> None:
    ledger = GitLedger(ws)
    shas = await asyncio.gather(*(add_file(ledger, f"f{i}.txt", b"x\n", f"f{i}") for i in range(4)))
    assert len(await ledger.entries()) == 4
    assert set(shas) == {e.sha for e in await ledger.entries()}
    assert git(ws, "status", "--porcelain") == ""


async def test_a_file_can_become_a_directory(ws: Path) -> None:
    ledger = GitLedger(ws)
    changes = {"a.txt/inner.py": b"x = 1\n", "a.txt": None}
    base = {"a.txt/inner.py": None, "a.txt": b"a1\n"}
    sha = await ledger.commit(changes, base, "keel: nest", TRAILERS)
    assert (ws / "a.txt" / "inner.py").read_bytes() == b"x = 1\n"
    assert git(ws, "ls-tree", "-r", "--name-only", sha).split() == ["a.txt/inner.py", "b.txt"]
    assert git(ws, "status", "--porcelain") == ""


async def test_settle_index_after_a_kill_between_commit_and_index_update(ws: Path) -> None:
    """HEAD moved but the user's index still has the old entries (``git status`` shows the
    committed files as staged for revert): settling fixes exactly the files whose working
    copy matches HEAD and leaves a file the user removed since, without failing."""
    ledger = await GitLedger.open(ws)
    sha = await ledger.commit(
        {"a.txt": b"a2\n", "c.txt": b"c\n", "d.txt": b"d\n"},
        {"a.txt": b"a1\n", "c.txt": None, "d.txt": None},
        "keel: three",
        TRAILERS,
    )
    git(ws, "read-tree", f"{sha}~1")  # the index as a kill before its update leaves it
    (ws / "d.txt").unlink()  # and the user removed one file meanwhile
    before = git(ws, "status", "--porcelain").splitlines()
    assert before == ["MM a.txt", "D  c.txt", "D  d.txt", "?? c.txt"]
    await ledger.settle_index(["a.txt", "c.txt", "d.txt", "a.txt"])
    assert git(ws, "status", "--porcelain").splitlines() == ["D  d.txt"]  # the user's removal
