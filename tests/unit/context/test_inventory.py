"""The inventory against real git: tracked plus untracked-not-ignored files, never binary, huge,
generated, secret-looking, ``.git/`` or ``.keel/`` files; a non-git folder is walked; verdicts
are cached and only changed files are read again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.context import inventory as inventory_module
from keel.context.inventory import MAX_BYTES, Inventory, secret_looking

from .conftest import commit_all, git, write


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        ".env.local",
        "config/.env.production",
        "deploy/prod.env",
        "certs/server.pem",
        "server.key",
        "home/.ssh/config",
        "id_rsa",
        "keys/id_ed25519.pub",
        ".netrc",
        ".pypirc",
        "credentials.json",
        "gcp/service-account-prod.json",
        ".aws/credentials",
        "infra/terraform.tfstate",
        "store.p12",
    ],
)
def test_secret_looking_names(path: str) -> None:
    assert secret_looking(path)


@pytest.mark.parametrize(
    "path",
    ["src/secrets.py", "env.py", "keys.py", "docs/credentials.md", "README.md", "a/environ.txt"],
)
def test_ordinary_names_are_not_secret(path: str) -> None:
    assert not secret_looking(path)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    git(root, "init", "-q")
    write(
        root,
        {
            ".gitignore": "build/\n*.log\n",
            "src/app.py": "def main():\n    return 1\n",
            "src/util.py": "X = 1\n",
            "README.md": "# hi\n",
            "logo.png": b"\x89PNG\r\n\x1a\n\0\0",
            "data.txt": b"abc\0def",
            "big.txt": "x\n" * (MAX_BYTES // 2 + 10),
            "app.min.js": "var a=1;",
            "one-line.js": "a" * 20_000,
            ".env": "TOKEN=hunter2\n",
            "certs/server.pem": "-----BEGIN-----\n",
        },
    )
    commit_all(root)
    write(
        root,
        {
            "build/out.py": "generated = 1\n",
            "debug.log": "noise\n",
            "src/new.py": "def fresh():\n    pass\n",
            ".keel/keel.db": "x",
        },
    )
    return root


async def test_git_inventory_keeps_what_the_user_means(repo: Path) -> None:
    inv = await Inventory.load(repo, None)
    assert inv.git
    assert inv.files == (".gitignore", "README.md", "src/app.py", "src/new.py", "src/util.py")
    assert "src/new.py" in inv and "build/out.py" not in inv and ".env" not in inv
    assert inv.skipped == {"secret": 2, "binary": 2, "huge": 1, "generated": 2}
    assert (inv.content_key("src/app.py") or "").startswith("b:")
    assert (inv.content_key("src/new.py") or "").startswith("s:")


async def test_deleted_modified_and_symlinked_files(repo: Path, tmp_path: Path) -> None:
    (repo / "src" / "util.py").unlink()
    (repo / "README.md").write_text("changed\n")
    outside = tmp_path / "outside.txt"
    outside.write_text("secret\n")
    (repo / "link.txt").symlink_to(outside)
    inv = await Inventory.load(repo, None)
    assert "src/util.py" not in inv
    assert "link.txt" not in inv
    assert (inv.content_key("README.md") or "").startswith("s:")


async def test_subdirectory_of_a_repository_lists_its_own_files(repo: Path) -> None:
    inv = await Inventory.load(repo / "src", None)
    assert inv.files == ("app.py", "new.py", "util.py")


async def test_non_git_folder_is_walked_skipping_hidden_dirs(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "a.py": "x = 1\n",
            "pkg/b.py": "y = 2\n",
            ".hidden/c.py": "z = 3\n",
            ".keel/state": "s",
            "node_modules/m.js": "m",
            ".env": "A=1",
            "pic.png": b"\0\0",
        },
    )
    inv = await Inventory.load(tmp_path, None)
    assert not inv.git
    assert inv.files == ("a.py", "pkg/b.py")


async def test_cache_reads_only_changed_files(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = await Inventory.load(repo, cache)
    assert (cache / "inventory.json").is_file()

    read: list[str] = []
    real = inventory_module._verdict

    def counting(path: Path) -> str:
        read.append(path.relative_to(repo).as_posix())
        return real(path)

    monkeypatch.setattr(inventory_module, "_verdict", counting)
    second = await Inventory.load(repo, cache)
    assert read == []
    assert second.files == first.files and second.skipped == first.skipped

    write(repo, {"src/app.py": "def main():\n    return 2\n", "src/later.py": "L = 1\n"})
    (repo / "src" / "new.py").write_bytes(b"now\0binary")
    third = await Inventory.load(repo, cache)
    assert sorted(read) == ["src/app.py", "src/later.py", "src/new.py"]
    assert "src/later.py" in third and "src/new.py" not in third


async def test_corrupt_cache_is_ignored_and_rewritten(repo: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "inventory.json").write_text('{"version": 1, "files": {"src/app.py": "bad"}}')
    inv = await Inventory.load(repo, cache)
    assert "src/app.py" in inv
    (cache / "inventory.json").write_text("not json")
    assert (await Inventory.load(repo, cache)).files == inv.files


async def test_unreadable_cache_dir_still_lists(repo: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    inv = await Inventory.load(repo, blocker / "cache")
    assert "src/app.py" in inv


async def test_odd_file_names_survive(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    git(root, "init", "-q")
    names = ["with space.py", "ünïcode.py", "-rf.py", "new\nline.py", 'quote".py', "tab\t.py"]
    write(root, dict.fromkeys(names, "x = 1\n"))
    git(root, "add", "--", "with space.py", "ünïcode.py")
    inv = await Inventory.load(root, tmp_path / "cache")
    assert set(inv.files) == set(names)
    assert (await Inventory.load(root, tmp_path / "cache")).files == inv.files


async def test_nested_repository_and_submodule_like_entries_are_not_files(
    repo: Path,
) -> None:
    nested = repo / "vendor" / "lib"
    nested.mkdir(parents=True)
    git(nested, "init", "-q")
    write(nested, {"inner.py": "y = 2\n"})
    commit_all(nested)
    inv = await Inventory.load(repo, None)
    assert not any(p.startswith("vendor/") for p in inv.files)


async def test_a_file_that_vanishes_or_turns_unreadable_is_left_out(
    repo: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    await Inventory.load(repo, cache)
    (repo / "src" / "new.py").unlink()
    (repo / "src" / "gone").mkdir()
    inv = await Inventory.load(repo, cache)
    assert "src/new.py" not in inv and "src/gone" not in inv
