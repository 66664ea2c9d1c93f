"""``keel serve`` with a bug planted in two feature handlers, for the containment test.

``python -m tests.e2e.faulty_server`` runs the real server, except that the hover handler
(a request) and the didOpen handler (a notification) raise for any file named ``boom.py``.
"""

from __future__ import annotations

from pathlib import Path

from keel.cli import main
from keel.lsp.convert import uri_to_path
from keel.lsp.features import documents, hover


def _planted(uri: str, root: Path) -> str | None:
    if uri.endswith("/boom.py"):
        raise RuntimeError("planted bug in a feature handler")
    return uri_to_path(uri, root)


hover.uri_to_path = _planted  # type: ignore[attr-defined]
documents.uri_to_path = _planted  # type: ignore[attr-defined]

if __name__ == "__main__":
    raise SystemExit(main(["serve"]))
