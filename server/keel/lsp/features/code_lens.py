"""CodeLens above every hunk of a pending file: Approve hunk, Reject hunk, Diff.

The hunks are the bundle's (``keel.bundles.hunks``, the ids ``keel.server.diff`` gives), each
placed at its line in the buffer as the editor has it (or in the file the bundle was made
against). Approve and Reject decide that hunk alone (``{"bundleId", "hunks": [id]}``).
Clients that support it are asked to refresh their lenses whenever the set of pending
bundles changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types as T

from keel.lsp.convert import uri_to_path

if TYPE_CHECKING:
    from pygls.lsp.server import LanguageServer

    from keel.lsp.services import Services


def register(ls: LanguageServer, services: Services) -> None:
    @ls.feature(T.TEXT_DOCUMENT_CODE_LENS, T.CodeLensOptions(resolve_provider=False))
    def code_lens(params: T.CodeLensParams) -> list[T.CodeLens] | None:
        root = services.workspace.root
        path = uri_to_path(params.text_document.uri, root) if root else None
        if path is None:
            return None
        lenses = []
        for bundle in services.bundles.for_path(path):
            for hunk, line in services.refresh.hunks(bundle, path):
                where = T.Range(T.Position(line, 0), T.Position(line, 0))
                chosen = [{"bundleId": bundle.id, "hunks": [hunk.id]}]
                for title, command, argument in (
                    ("Keel: Approve hunk", "keel.server.approve", chosen),
                    ("Keel: Reject hunk", "keel.server.reject", chosen),
                    ("Keel: Diff", "keel.server.diff", [{"bundleId": bundle.id}]),
                ):
                    lenses.append(
                        T.CodeLens(
                            range=where,
                            command=T.Command(title=title, command=command, arguments=argument),
                        )
                    )
        return lenses
