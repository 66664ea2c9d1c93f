"""What a model may be shown: the one guarded way files reach a prompt.

A plan names files two ways: the ones a node writes (``owns``) and the ones it reads
(``context``). Both end up in the actuator's prompt, so both pass :func:`check_plan_path`
(workspace-relative, no ``..``, nothing under ``.git/`` or ``.keel/``, nothing that looks like
a secret, no symlink leading out of the tree) when the plan is validated, and every file read
for a prompt goes through :func:`read_for_prompt`, which checks again where it reads (a
sandbox exported from git may hold a symlink the plan check never saw) and refuses binary
files. What it refuses or shortens carries a note that the prompt states.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from keel.bundles.paths import PathError, escape, first_control, normalize, resolve_inside

#: File names whose content is a credential, wherever they are (the same as the inventory's,
#: ``keel.context.inventory``, which keeps such files out of the repository map).
SECRET_NAMES = frozenset(
    {
        ".env",
        ".netrc",
        "_netrc",
        ".npmrc",
        ".pypirc",
        ".pgpass",
        ".htpasswd",
        ".git-credentials",
        ".dockercfg",
        "credentials",
        "credentials.json",
        "credentials.yml",
        "credentials.yaml",
        "credentials.xml",
        "secrets.json",
        "secrets.yml",
        "secrets.yaml",
        "secrets.toml",
        "secrets.env",
        "client_secret.json",
        "service-account.json",
        "known_hosts",
        "authorized_keys",
        "terraform.tfstate",
        "terraform.tfvars",
    }
)
SECRET_GLOBS = (
    ".env.*",
    "*.env",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.kdbx",
    "*.asc",
    "*.gpg",
    "*.ovpn",
    "*.tfstate",
    "*.tfstate.*",
    "client_secret*.json",
    "service-account*.json",
    "*credentials*.json",
)
#: Directories that hold credentials, at any depth.
SECRET_DIRS = frozenset({".ssh", ".aws", ".gnupg", ".docker", ".kube"})
#: ``.env.example`` and the like are templates meant to be read.
ENV_TEMPLATES = (".example", ".sample", ".template", ".dist", ".defaults")

#: A node id is used in sandbox paths, request headers and commit trailers.
NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_TITLE = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def secret_looking(path: str) -> bool:
    """Whether ``path`` (workspace-relative, ``/`` separators) looks like it holds a secret.

    Decided from the name alone, so the file is never opened.
    """
    parts = PurePosixPath(path).parts
    if not parts:
        return False
    if any(part in SECRET_DIRS for part in parts[:-1]):
        return True
    name = parts[-1].lower()
    if name.startswith(".env.") and name.endswith(ENV_TEMPLATES):
        return False
    return name in SECRET_NAMES or any(fnmatch.fnmatchcase(name, g) for g in SECRET_GLOBS)


def check_plan_path(raw: str, root: Path | None = None) -> str:
    """The canonical form of a path a plan names, or PathError saying why it is refused.

    With ``root``, the path's real location (symlinks followed) must stay inside it and out
    of ``.git/`` and ``.keel/``.
    """
    path = normalize(raw)
    if secret_looking(path):
        raise PathError(f"{path}: looks like a secret (credentials, keys, .env); never shown")
    if root is not None:
        real = resolve_inside(root, path)
        inside = real.relative_to(os.path.realpath(root)).as_posix()
        if inside != path and secret_looking(inside):
            raise PathError(f"{path}: leads to {inside}, which looks like a secret; never shown")
    return path


MAX_ID_BYTES = 128


def node_id_problem(node_id: str) -> str | None:
    """Why ``node_id`` is not a safe name, or None.

    An id names a directory (the node's sandboxes) and a ``Keel-Node`` trailer: a short,
    plain file name without control characters. The sentence names the specific fault first.
    """
    if NODE_ID.fullmatch(node_id):
        return None
    shown = escape(node_id if len(node_id) <= 40 else node_id[:40] + "...")
    if (control := first_control(node_id)) is not None:
        fault = f"node id {shown} contains the control character {control}; "
    elif "/" in node_id or "\\" in node_id or node_id.strip(".") == "":
        fault = f"node id {shown} must be a plain name (no '/', '\\', '.' or '..'); "
    elif len(node_id.encode()) > MAX_ID_BYTES:
        fault = f"node id {shown} is longer than {MAX_ID_BYTES} bytes; "
    else:
        fault = ""
    return (
        f"{fault}node id {shown!r} is not a safe name: use 1-64 letters, digits, '.', '_' or "
        "'-', starting with a letter or digit"
    )


def title_problem(node_id: str, title: str) -> str | None:
    """Why a node's title cannot be used (a commit subject printed to terminals), or None."""
    found = _CONTROL.search(title)
    if found is not None:
        char = found.group()
        shown = first_control(char) or f"U+{ord(char):04X}"
        return (
            f"the title of {escape(node_id)} contains the control character {shown} "
            "(no control characters: newlines, tabs, escapes)"
        )
    if len(title) > MAX_TITLE:
        return f"{node_id}'s title is {len(title)} characters; keep it under {MAX_TITLE}"
    return None


@dataclass(frozen=True)
class PromptFile:
    """One file as a prompt shows it: its text, or ``None`` and a note saying why not.

    ``note`` is empty for a file shown whole; otherwise it is what the prompt states
    (absent, refused, binary, shortened).
    """

    path: str
    text: str | None
    note: str = ""
    #: Characters of the whole file (0 when it is not read).
    size: int = 0


ABSENT = "does not exist yet"
#: The note of a file a change set deletes.
DELETED = "deleted by this attempt"
#: Files up to this many bytes are read whole, so their size is given in characters.
READ_WHOLE = 1 << 20


def read_for_prompt(root: Path, paths: list[str] | tuple[str, ...], limit: int) -> list[PromptFile]:
    """Each path under ``root`` as a prompt may show it, cut at ``limit`` characters.

    Blocking: call it in ``asyncio.to_thread``. Never raises for a bad path or file; the
    reason is the file's note.
    """
    return [_read_one(root, raw, limit) for raw in paths]


def _read_one(root: Path, raw: str, limit: int) -> PromptFile:
    try:
        path = check_plan_path(raw, root)
    except PathError as exc:
        return PromptFile(raw, None, f"refused: {exc}")
    target = root / path
    try:
        info = target.stat()
    except (FileNotFoundError, NotADirectoryError):
        return PromptFile(path, None, ABSENT)
    except OSError as exc:
        return PromptFile(path, None, f"unreadable: {exc.strerror or exc}")
    if stat.S_ISDIR(info.st_mode):
        return PromptFile(path, None, "a directory; its files are not shown")
    if not stat.S_ISREG(info.st_mode):  # a FIFO or socket would block or never end
        return PromptFile(path, None, "not a regular file; not shown")
    try:
        with target.open("rb") as handle:
            # Enough for ``limit`` characters (at most 4 bytes each) and to measure an
            # ordinary file exactly, never a whole huge file in memory.
            data = handle.read(max(limit * 4 + 4, READ_WHOLE))
    except OSError as exc:
        return PromptFile(path, None, f"unreadable: {exc.strerror or exc}")
    return _from_bytes(path, data, info.st_size, limit)


def _from_bytes(path: str, data: bytes, size: int, limit: int) -> PromptFile:
    """``data``, the first bytes of a file of ``size`` bytes, as a prompt shows it."""
    if b"\0" in data[:8192]:
        return PromptFile(path, None, f"binary ({size} bytes); not shown", size)
    text = data.decode("utf-8", errors="replace")
    whole = len(data) >= size
    if whole and len(text) <= limit:
        return PromptFile(path, text, "", len(text))
    shown = len(text) if whole else size
    unit = "characters" if whole else "bytes"
    note = f"shortened to its first {limit} of {shown} {unit}"
    return PromptFile(path, text[:limit], note, shown)


def changed_for_prompt(changes: Mapping[str, bytes | None], limit: int) -> list[PromptFile]:
    """A change set's new contents as a prompt may show them (the same refusals as a file
    read from disk: a secret's path is never shown); a deleted file says so."""
    shown = []
    for raw in sorted(changes):
        try:
            path = check_plan_path(raw, None)
        except PathError as exc:
            shown.append(PromptFile(raw, None, f"refused: {exc}"))
            continue
        data = changes[raw]
        if data is None:
            shown.append(PromptFile(path, None, DELETED))
        else:
            shown.append(_from_bytes(path, data, len(data), limit))
    return shown
