"""The context caches under ``.keel/context/``: read leniently, written atomically.

A cache is an optimisation, never a source of truth: a missing, damaged or older cache reads
as empty (the caller rebuilds it), and a cache that cannot be written (a read-only workspace)
is logged and skipped. Writes go to a temporary sibling and are renamed into place, so a
reader never sees half a file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)


def read_files(path: Path, version: int) -> dict[str, Any]:
    """The ``files`` table of the JSON cache at ``path`` if it has ``version``, else ``{}``."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != version:
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def write_files(path: Path, version: int, files: Mapping[str, Any]) -> None:
    """Store ``files`` as the JSON cache at ``path`` with ``version``."""
    payload = json.dumps({"version": version, "files": files}).encode()
    write_atomic(path, lambda handle: handle.write(payload))


def write_atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Create ``path`` by ``write`` into a temporary sibling renamed into place; a failure is
    logged (the cache is skipped) and leaves no temporary file behind."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with tmp.open("wb") as handle:
                write(handle)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:  # a read-only workspace still gets its inventory and map
        log.warning("%s not cached: %s", path.name, exc)
