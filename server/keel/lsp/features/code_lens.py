"""CodeLens above every changed region of a pending file: Approve, Reject, Diff.

Regions are computed with difflib between the buffer as the editor has it (or the file the
bundle was made against) and the proposal. Clients that support it are asked to refresh
their lenses whenever the set of pending bundles changes.
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
            argument = [{"bundleId": bundle.id}]
            for line in services.refresh.regions(bundle, path):
                where = T.Range(T.Position(line, 0), T.Position(line, 0))
                for title, command in (
                    (f"Keel: Approve {bundle.title}", "keel.server.approve"),
                    ("Keel: Reject", "keel.server.reject"),
                    ("Keel: Diff", "keel.server.diff"),
                ):
                    lenses.append(
                        T.CodeLens(
                            range=where,
                            command=T.Command(title=title, command=command, arguments=argument),
                        )
                    )
        return lenses
