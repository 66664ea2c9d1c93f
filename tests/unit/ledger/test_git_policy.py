"""Keel's own git against real repositories with real hooks: its plumbing runs no hook and
inherits no redirecting variable or secret; the ledger commit runs the user's hooks and signs
as configured, or refuses with the reason and writes nothing; git mid-operation and a detached
HEAD are refused before anything is written (docs/explanation/ledger.md)."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from pathlib import Path

import pytest

from keel.engine.ports import LedgerRefused
from keel.ledger import GitLedger
from keel.ledger.git_ledger import git_environment
from tests.unit.ledger.test_git_ledger import TRAILERS, git, head


@pytest.fixture(autouse=True)
def _hermetic_git(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path_factory.mktemp("home")
    (home / ".gitconfig").write_text("")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_CONFIG_GLOBAL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "a.txt").write_text("a1\n")
    (root / "b.txt").write_text("b1\n")
    git(root, "add", "a.txt", "b.txt")
    git(root, "commit", "-q", "-m", "user: initial")
    return root


def hook(
    ws: Path, name: str, body: str, *, executable: bool = True, where: str = ".git/hooks"
) -> Path:
    path = ws / where / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755 if executable else 0o644)
    return path


def snapshot(ws: Path) -> tuple[str, str, str, bytes]:
    """HEAD, the index, the status and a.txt: what a refused commit must leave unchanged."""
    index = git(ws, "ls-files", "--stage")
    return head(ws), index, git(ws, "status", "--porcelain"), (ws / "a.txt").read_bytes()


async def commit_a(ledger: GitLedger) -> str:
    return await ledger.commit({"a.txt": b"a2\n"}, {"a.txt": b"a1\n"}, "keel: change a", TRAILERS)


# --------------------------------------------------------------------- plumbing


async def test_plumbing_runs_none_of_the_repository_hooks(ws: Path) -> None:
    """update-ref, read-tree and update-index would run these; a hook written into .git by
    model code must never run with Keel's rights."""
    marker = ws.parent / "ran"
    for name in ("reference-transaction", "post-index-change", "post-checkout"):
        hook(ws, name, f'echo {name} >> "{marker}"\n')
    ledger = await GitLedger.open(ws)
    await commit_a(ledger)
    await ledger.rollback("HEAD")
    await ledger.export(ws.parent / "export")
    assert not marker.exists()


async def test_inherited_git_variables_and_secrets_do_not_reach_git_or_hooks(
    ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    git(decoy, "init", "-q", "-b", "main")
    evil_hooks = tmp_path / "evil-hooks"
    evil_hooks.mkdir()
    (evil_hooks / "reference-transaction").write_text(f"#!/bin/sh\ntouch {tmp_path}/evil\n")
    (evil_hooks / "reference-transaction").chmod(0o755)
    monkeypatch.setenv("GIT_DIR", str(decoy / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(decoy))
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "stolen-index"))
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "core.hooksPath")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", str(evil_hooks))
    monkeypatch.setenv("GIT_EXEC_PATH", str(tmp_path / "no-such-exec-path"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    dump = tmp_path / "env-seen-by-hook"
    hook(ws, "pre-commit", f'env > "{dump}"\n')
    ledger = await GitLedger.open(ws)
    sha = await commit_a(ledger)
    monkeypatch.delenv("GIT_DIR")
    monkeypatch.delenv("GIT_WORK_TREE")
    monkeypatch.delenv("GIT_INDEX_FILE")
    monkeypatch.delenv("GIT_EXEC_PATH")
    assert head(ws) == sha  # the commit went to the workspace's repository
    assert not (tmp_path / "stolen-index").exists()
    assert not (tmp_path / "evil").exists()
    seen = dump.read_text()
    assert "sk-secret-value" not in seen
    assert "GIT_CONFIG_COUNT" not in seen and str(decoy) not in seen
    assert "GIT_INDEX_FILE=" in seen  # the hook sees the commit's index, as under git commit


def test_git_environment_keeps_only_what_git_needs() -> None:
    env = git_environment(
        {"GIT_DIR": "/repo/.git"},
        source={
            "PATH": "/bin",
            "HOME": "/home/u",
            "GNUPGHOME": "/g",
            "LC_CTYPE": "C.UTF-8",
            "GIT_DIR": "/elsewhere",
            "GIT_CONFIG_PARAMETERS": "'core.hookspath'='/x'",
            "ANTHROPIC_API_KEY": "secret",
            "LD_PRELOAD": "/tmp/x.so",
        },
    )
    assert env["GIT_DIR"] == "/repo/.git"
    assert env["PATH"] == "/bin" and env["GNUPGHOME"] == "/g" and env["LC_CTYPE"] == "C.UTF-8"
    assert "GIT_CONFIG_PARAMETERS" not in env
    assert "ANTHROPIC_API_KEY" not in env and "LD_PRELOAD" not in env


# --------------------------------------------------------------------- the user's hooks


async def test_a_failing_pre_commit_hook_refuses_with_its_output_and_writes_nothing(
    ws: Path,
) -> None:
    hook(ws, "pre-commit", 'echo "lint: a.txt is not allowed to change" >&2\nexit 3\n')
    (ws / "b.txt").write_text("b staged\n")
    git(ws, "add", "b.txt")
    before = snapshot(ws)
    ledger = await GitLedger.open(ws)
    with pytest.raises(LedgerRefused) as info:
        await commit_a(ledger)
    assert "pre-commit hook refused" in str(info.value)
    assert "exit status 3" in str(info.value)
    assert "lint: a.txt is not allowed to change" in info.value.output
    assert snapshot(ws) == before
    assert not list((ws / ".git").glob("keel-index-*"))


async def test_a_passing_pre_commit_hook_sees_exactly_the_commit(ws: Path, tmp_path: Path) -> None:
    seen = tmp_path / "staged"
    hook(ws, "pre-commit", f'git diff --cached --name-only > "{seen}"\n')
    (ws / "b.txt").write_text("b staged\n")
    git(ws, "add", "b.txt")  # the user's staged work is not part of the ledger commit
    ledger = await GitLedger.open(ws)
    sha = await commit_a(ledger)
    assert seen.read_text().split() == ["a.txt"]
    assert git(ws, "show", "--name-only", "--format=", sha).split() == ["a.txt"]
    assert git(ws, "diff", "--cached", "--name-only").split() == ["b.txt"]


async def test_a_pre_commit_hook_that_changes_the_index_is_refused(ws: Path) -> None:
    (ws / "sneaky.txt").write_text("not verified\n")
    hook(ws, "pre-commit", "git add sneaky.txt\n")
    before = snapshot(ws)
    ledger = await GitLedger.open(ws)
    with pytest.raises(LedgerRefused, match="changed what would be committed"):
        await commit_a(ledger)
    assert snapshot(ws) == before


async def test_a_commit_msg_hook_that_rewrites_the_message_is_honoured(ws: Path) -> None:
    hook(ws, "commit-msg", 'printf "Change-Id: I0123456789abcdef\\n" >> "$1"\n')
    ledger = await GitLedger.open(ws)
    sha = await commit_a(ledger)
    message = git(ws, "log", "-1", "--format=%B", sha)
    assert "Change-Id: I0123456789abcdef" in message
    [entry] = await ledger.entries()
    assert entry.sha == sha and entry.title == "change a" and entry.node == "n1"


async def test_a_commit_msg_hook_that_drops_the_trailers_is_refused(ws: Path) -> None:
    hook(ws, "commit-msg", 'echo "WIP" > "$1"\n')
    before = snapshot(ws)
    ledger = await GitLedger.open(ws)
    with pytest.raises(LedgerRefused, match="lost Keel-Session"):
        await commit_a(ledger)
    assert snapshot(ws) == before


async def test_a_commit_msg_hook_that_fails_refuses(ws: Path) -> None:
    hook(ws, "commit-msg", 'echo "missing ticket number" >&2\nexit 1\n')
    before = snapshot(ws)
    ledger = await GitLedger.open(ws)
    with pytest.raises(LedgerRefused) as info:
        await commit_a(ledger)
    assert "commit-msg hook refused" in str(info.value)
    assert "missing ticket number" in info.value.output
    assert snapshot(ws) == before


async def test_a_hook_that_is_not_executable_is_ignored_as_git_ignores_it(
    ws: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = hook(ws, "pre-commit", "exit 1\n", executable=False)
    ledger = await GitLedger.open(ws)
    with caplog.at_level(logging.WARNING, logger="keel.ledger.git_ledger"):
        sha = await commit_a(ledger)
    assert head(ws) == sha
    assert "not executable" in caplog.text and str(path) in caplog.text
    # git itself makes the same choice for the user's own commits
    (ws / "b.txt").write_text("b2\n")
    git(ws, "commit", "-q", "-am", "user: b")


async def test_hooks_come_from_core_hooks_path(ws: Path) -> None:
    hook(ws, "pre-commit", 'echo "from the shared hooks" >&2\nexit 1\n', where="shared-hooks")
    git(ws, "config", "core.hooksPath", "shared-hooks")
    ledger = await GitLedger.open(ws)
    with pytest.raises(LedgerRefused) as info:
        await commit_a(ledger)
    assert "from the shared hooks" in info.value.output


async def test_post_commit_runs_after_the_commit_and_its_failure_is_only_logged(
    ws: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "post"
    hook(ws, "post-commit", f'git rev-parse HEAD > "{marker}"\nexit 1\n')
    ledger = await GitLedger.open(ws)
    sha = await commit_a(ledger)
    assert marker.read_text().strip() == sha


# --------------------------------------------------------------------- signing


async def test_gpgsign_without_a_key_is_refused_with_the_reason(
    ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gnupg = tmp_path / "gnupg"
    gnupg.mkdir(mode=0o700)
    monkeypatch.setenv("GNUPGHOME", str(gnupg))
    git(ws, "config", "commit.gpgsign", "true")
    git(ws, "config", "user.signingkey", "nobody@example.com")
    before = snapshot(ws)
    ledger = await GitLedger.open(ws)
    with pytest.raises(LedgerRefused) as info:
        await commit_a(ledger)
    assert "commit.gpgsign is set" in str(info.value)
    assert "never commits unsigned" in str(info.value)
    assert info.value.output  # gpg's own words
    assert snapshot(ws) == before


async def test_gpgsign_with_a_signing_program_signs_the_ledger_commit(
    ws: Path, tmp_path: Path
) -> None:
    """A stand-in for gpg that produces a signature block proves Keel asks git to sign."""
    fake = tmp_path / "fake-gpg"
    fake.write_text(
        "#!/bin/sh\ncat > /dev/null\necho '[GNUPG:] SIG_CREATED ' >&2\n"
        "printf -- '-----BEGIN PGP SIGNATURE-----\\n\\nfake\\n-----END PGP SIGNATURE-----\\n'\n"
    )
    fake.chmod(0o755)
    git(ws, "config", "commit.gpgsign", "true")
    git(ws, "config", "gpg.program", str(fake))
    ledger = await GitLedger.open(ws)
    sha = await commit_a(ledger)
    raw = git(ws, "cat-file", "commit", sha)
    assert "gpgsig -----BEGIN PGP SIGNATURE-----" in raw


# --------------------------------------------------------------------- git's state


def _conflict(ws: Path) -> None:
    """Two branches changing b.txt differently: every operation below stops on a conflict."""
    git(ws, "switch", "-q", "-c", "other")
    (ws / "b.txt").write_text("b other\n")
    git(ws, "commit", "-q", "-am", "other: b")
    git(ws, "switch", "-q", "main")
    (ws / "b.txt").write_text("b main\n")
    git(ws, "commit", "-q", "-am", "main: b")


def _try(ws: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=U", "-c", "user.email=u@example.com", *args],
        cwd=ws,
        capture_output=True,
        check=False,
    )


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        (("merge", "other"), "a merge is in progress"),
        (("rebase", "other"), "a rebase is in progress"),
        (("cherry-pick", "other"), "a cherry-pick is in progress"),
        (("revert", "--no-edit", "HEAD"), "a revert is in progress"),
    ],
    ids=["merge", "rebase", "cherry-pick", "revert"],
)
async def test_an_operation_in_progress_refuses_before_anything_is_written(
    ws: Path, operation: tuple[str, ...], expected: str
) -> None:
    _conflict(ws)
    if operation[0] == "revert":  # reverting main's b.txt change conflicts with a later one
        (ws / "b.txt").write_text("b later\n")
        git(ws, "commit", "-q", "-am", "main: b later")
        operation = ("revert", "--no-edit", "HEAD~1")
    _try(ws, *operation)
    before = (ws / "a.txt").read_bytes(), git(ws, "rev-parse", "HEAD")
    ledger = await GitLedger.open(ws)
    with pytest.raises(LedgerRefused, match=expected):
        await ledger.check_ready()
    with pytest.raises(LedgerRefused, match=expected):
        await commit_a(ledger)
    assert ((ws / "a.txt").read_bytes(), git(ws, "rev-parse", "HEAD")) == before


async def test_a_detached_head_refuses_before_anything_is_written(ws: Path) -> None:
    git(ws, "switch", "-q", "--detach", "HEAD")
    before = snapshot(ws)
    ledger = await GitLedger.open(ws)
    with pytest.raises(LedgerRefused, match=r"HEAD is detached at [0-9a-f]{12}.*git switch"):
        await ledger.check_ready()
    with pytest.raises(LedgerRefused, match="detached"):
        await commit_a(ledger)
    assert snapshot(ws) == before


async def test_an_unborn_branch_is_ready(tmp_path: Path) -> None:
    ledger = await GitLedger.open(tmp_path)
    await ledger.check_ready()
    sha = await ledger.commit({"a.txt": b"a\n"}, {"a.txt": None}, "keel: first", TRAILERS)
    assert git(tmp_path, "rev-parse", "main").strip() == sha


# --------------------------------------------------------------------- symlinks


async def test_a_file_swapped_for_a_symlink_after_verification_is_refused(ws: Path) -> None:
    (ws / "a.txt").unlink()
    os.symlink("b.txt", ws / "a.txt")
    ledger = await GitLedger.open(ws)
    with pytest.raises(LedgerRefused, match=r"a\.txt is a symlink"):
        await ledger.commit({"a.txt": b"a2\n"}, {"a.txt": b"b1\n"}, "keel: a", TRAILERS)
    assert (ws / "b.txt").read_text() == "b1\n"
    assert stat.S_ISLNK((ws / "a.txt").lstat().st_mode)


async def test_a_directory_swapped_for_a_symlink_is_refused(ws: Path, tmp_path: Path) -> None:
    (ws / "pkg").mkdir()
    (ws / "pkg" / "m.py").write_text("x = 1\n")
    git(ws, "add", "pkg")
    git(ws, "commit", "-q", "-m", "user: pkg")
    elsewhere = ws / "other"
    (ws / "pkg").rename(elsewhere)
    os.symlink("other", ws / "pkg")
    ledger = await GitLedger.open(ws)
    with pytest.raises(LedgerRefused, match="pkg is a symlink"):
        await ledger.commit({"pkg/m.py": b"x = 2\n"}, {"pkg/m.py": b"x = 1\n"}, "keel: m", TRAILERS)
    assert (elsewhere / "m.py").read_text() == "x = 1\n"


async def test_the_commit_holds_the_approved_bytes_even_if_the_file_changes_after_writing(
    ws: Path,
) -> None:
    """The blob is hashed from the approved content, not re-read from the workspace."""
    ledger = await GitLedger.open(ws)
    original = ledger._write_all

    def write_then_tamper(*args: object, **kwargs: object) -> None:
        original(*args, **kwargs)  # type: ignore[arg-type]
        (ws / "a.txt").write_text("tampered\n")

    ledger._write_all = write_then_tamper  # type: ignore[method-assign]
    sha = await commit_a(ledger)
    assert git(ws, "show", f"{sha}:a.txt") == "a2\n"


async def test_a_rollback_is_refused_on_a_detached_head_too(ws: Path) -> None:
    ledger = await GitLedger.open(ws)
    sha = await commit_a(ledger)
    git(ws, "switch", "-q", "--detach", "HEAD")
    with pytest.raises(LedgerRefused, match="detached"):
        await ledger.rollback(sha)
    assert head(ws) == sha and (ws / "a.txt").read_text() == "a2\n"


async def test_prepare_commit_msg_runs_with_the_message_source(ws: Path, tmp_path: Path) -> None:
    seen = tmp_path / "args"
    hook(
        ws,
        "prepare-commit-msg",
        f'echo "$2" > "{seen}"\nprintf "Signed-off-by: U <u@x>\\n" >> "$1"\n',
    )
    ledger = await GitLedger.open(ws)
    sha = await commit_a(ledger)
    assert seen.read_text().strip() == "message"
    assert "Signed-off-by: U <u@x>" in git(ws, "log", "-1", "--format=%B", sha)
    assert [e.sha for e in await ledger.entries()] == [sha]


async def test_a_hook_that_does_not_finish_in_time_refuses(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("keel.ledger.git_ledger.HOOK_TIMEOUT_S", 0.2)
    # a child in the background holds the output pipe too: it is killed with the hook
    hook(ws, "pre-commit", "echo started\nsleep 60 &\nexec sleep 60\n")
    before = snapshot(ws)
    ledger = await GitLedger.open(ws)
    with pytest.raises(LedgerRefused, match=r"did not finish in 0\.2 s") as info:
        await commit_a(ledger)
    assert info.value.output == "started"
    assert snapshot(ws) == before
