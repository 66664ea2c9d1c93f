"""The files a user means: tracked plus untracked-not-ignored, never binary, huge or secret.

``Inventory.load`` asks git (``git ls-files``, plain subprocesses, ``-z``) for the tracked files
with their blob ids, the untracked files that no ignore rule hides, and the modified and deleted
ones; outside a git repository it walks the folder, skipping hidden directories. Each candidate
gets a verdict (kept, binary, huge, generated) that is cached in ``inventory.json`` under the
cache directory, keyed by the blob id for clean tracked files and by ``stat`` for the others, so
a second load reads only the files that changed. Secret-looking files (``.env``, keys,
credentials) are dropped by name and never opened; ``.git/`` and ``.keel/`` are never listed.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import re
import stat
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from keel.context import cache

# One list of secret-looking names for the map, the explorer and plan validation.
from keel.engine.guard import secret_looking

__all__ = ["Inventory", "never_listed", "secret_looking"]

log = logging.getLogger(__name__)

MAX_BYTES = 1_000_000
"""Files larger than this are left out as huge (generated data, vendored bundles, dumps)."""

SNIFF_BYTES = 8_000
"""How much of a file is read to tell text from binary (a NUL byte, as git decides)."""

LONG_LINE = 1_000
"""A sniffed head whose lines average longer than this is minified or generated."""

CACHE_NAME = "inventory.json"
CACHE_VERSION = 1

NEVER_DIRS = frozenset({".git", ".keel"})
WALK_SKIPPED_DIRS = frozenset({"node_modules", "__pycache__", "site-packages"})

BINARY_SUFFIXES = frozenset(
    """
    .png .jpg .jpeg .gif .bmp .ico .icns .webp .tif .tiff .psd .svgz .heic
    .pdf .doc .docx .xls .xlsx .ppt .pptx .odt .ods .epub
    .zip .gz .tgz .bz2 .xz .zst .7z .rar .tar .jar .war .whl .egg .deb .rpm .dmg .iso
    .so .dll .dylib .exe .o .a .lib .obj .pyc .pyo .pyd .class .wasm .bin .dat .db .sqlite
    .sqlite3 .mo .ttf .otf .woff .woff2 .eot .mp3 .mp4 .wav .ogg .flac .avi .mov .mkv .webm
    .npy .npz .pkl .pickle .h5 .parquet .onnx .pt .pth .ckpt .safetensors
    """.split()
)
GENERATED_GLOBS = ("*.min.js", "*.min.css", "*.js.map", "*.css.map", "*.map")

GENERATED_PATTERN = re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in GENERATED_GLOBS))


def never_listed(path: str) -> bool:
    """``.git/`` and ``.keel/`` anywhere in the path: Keel's and git's own state."""
    return any(part in NEVER_DIRS for part in path.split("/"))


@dataclass(frozen=True)
class Inventory:
    """The workspace's files a model may see, workspace-relative with ``/``, sorted.

    ``keys`` maps each file to a content key (its blob id for clean tracked files, a ``stat``
    key otherwise) that caches of derived data (the repository map's parses) reuse.
    ``skipped`` counts what was left out by reason (binary, huge, generated, secret).
    """

    root: Path
    files: tuple[str, ...]
    keys: Mapping[str, str] = field(default_factory=dict)
    skipped: Mapping[str, int] = field(default_factory=dict)
    git: bool = False

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and path in self._set

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def _set(self) -> frozenset[str]:
        cached = self.__dict__.get("_members")
        if cached is None:
            cached = frozenset(self.files)
            object.__setattr__(self, "_members", cached)
        return cached

    def content_key(self, path: str) -> str | None:
        return self.keys.get(path)

    @classmethod
    async def load(cls, root: Path, cache_dir: Path | None = None) -> Inventory:
        """List ``root``'s files (see the module docstring); ``cache_dir`` keeps verdicts."""
        root = await asyncio.to_thread(root.resolve)
        candidates = await _git_candidates(root)
        is_git = candidates is not None
        if candidates is None:
            candidates = await asyncio.to_thread(_walk_candidates, root)
        return await asyncio.to_thread(_judge, root, candidates, cache_dir, is_git)


async def _git(root: Path, *args: str) -> bytes | None:
    try:
        proc = await asyncio.create_subprocess_exec(
            "git",
            "-C",
            str(root),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
        )
    except OSError:
        return None
    out, _ = await proc.communicate()
    return out if proc.returncode == 0 else None


async def _git_candidates(root: Path) -> dict[str, str | None] | None:
    """``path -> blob id`` (``None`` when the work tree may differ from the blob), or ``None``
    when ``root`` is not inside a git work tree."""
    staged, others, modified, deleted = await asyncio.gather(
        _git(root, "ls-files", "-z", "-s"),
        _git(root, "ls-files", "-z", "-o", "--exclude-standard"),
        _git(root, "ls-files", "-z", "-m"),
        _git(root, "ls-files", "-z", "-d"),
    )
    if staged is None or others is None or modified is None or deleted is None:
        return None
    gone = set(_entries(deleted))
    dirty = set(_entries(modified))
    found: dict[str, str | None] = {}
    for entry in _entries(staged):
        meta, _, path = entry.partition("\t")
        mode, blob, stage = [*meta.split(" "), "", "", ""][:3]
        if mode in ("160000", "120000") or path in gone:  # submodules, symlinks
            continue
        found[path] = None if (stage != "0" or path in dirty or path in found) else blob
    for path in _entries(others):
        if not path.endswith("/"):  # a nested repository shows as a folder
            found.setdefault(path, None)
    return found


def _entries(raw: bytes) -> list[str]:
    return [e for e in raw.decode("utf-8", "surrogateescape").split("\0") if e]


def _walk_candidates(root: Path) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if not d.startswith(".") and d not in WALK_SKIPPED_DIRS]
        base = Path(directory).relative_to(root).as_posix()
        for name in files:
            found[name if base == "." else f"{base}/{name}"] = None
    return found


def _judge(
    root: Path, candidates: Mapping[str, str | None], cache_dir: Path | None, is_git: bool
) -> Inventory:
    cache = _read_cache(cache_dir)
    fresh: dict[str, list[str]] = {}
    keys: dict[str, str] = {}
    kept: list[str] = []
    skipped: Counter[str] = Counter()
    for path, blob in candidates.items():
        if never_listed(path):
            continue
        if secret_looking(path):
            skipped["secret"] += 1
            continue
        if blob is not None:
            key = "b:" + blob
        else:
            try:
                st = os.lstat(root / path)
            except OSError:
                continue
            if not _regular(st.st_mode):
                continue
            key = f"s:{st.st_mtime_ns}:{st.st_size}:{st.st_ino}"
        hit = cache.get(path)
        fits = isinstance(hit, list) and len(hit) == 2 and hit[0] == key
        verdict = str(hit[1]) if fits and hit is not None else _verdict(root / path)
        if verdict == "missing":
            continue
        fresh[path] = [key, verdict]
        if verdict == "ok":
            kept.append(path)
            keys[path] = key
        else:
            skipped[verdict] += 1
    if fresh != cache:
        _write_cache(cache_dir, fresh)
    return Inventory(root, tuple(sorted(kept)), keys, dict(skipped), is_git)


def _regular(mode: int) -> bool:
    return stat.S_ISREG(mode)


def _verdict(path: Path) -> str:
    """``ok``, ``binary``, ``huge``, ``generated`` or ``missing`` for one file on disk."""
    name = path.name.lower()
    if path.suffix.lower() in BINARY_SUFFIXES:
        return "binary"
    if GENERATED_PATTERN.match(name):
        return "generated"
    try:
        st = path.lstat()
        if not _regular(st.st_mode):
            return "missing"
        if st.st_size > MAX_BYTES:
            return "huge"
        with path.open("rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError:
        return "missing"
    if b"\0" in head:
        return "binary"
    if len(head) >= SNIFF_BYTES and len(head) / (head.count(b"\n") + 1) > LONG_LINE:
        return "generated"
    return "ok"


def _read_cache(cache_dir: Path | None) -> dict[str, list[str]]:
    return {} if cache_dir is None else cache.read_files(cache_dir / CACHE_NAME, CACHE_VERSION)


def _write_cache(cache_dir: Path | None, files: Mapping[str, list[str]]) -> None:
    if cache_dir is not None:
        cache.write_files(cache_dir / CACHE_NAME, CACHE_VERSION, files)
