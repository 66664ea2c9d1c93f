"""didOpen / didChange / didClose / didSave: which buffers are open, at which version.

pygls keeps the buffers' text; the server keeps a digest per version so forwarded editor
diagnostics can be pinned to the text they describe, and approval can compare a pending
bundle's base with what the user has in the buffer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types as T

from keel.lsp.convert import uri_to_path

if TYPE_CHECKING:
    from pygls.lsp.server import LanguageServer

    from keel.lsp.services import Services


def register(ls: LanguageServer, services: Services) -> None:
    def path_of(uri: str) -> str | None:
        return uri_to_path(uri, services.workspace.root) if services.workspace.root else None

    def text_of(uri: str) -> str:
        return services.documents.text(uri)

    @ls.feature(T.TEXT_DOCUMENT_DID_OPEN)
    def did_open(params: T.DidOpenTextDocumentParams) -> None:
        doc = params.text_document
        services.documents.opened(doc.uri, path_of(doc.uri), doc.version, text_of(doc.uri))
        services.refresh.schedule()

    @ls.feature(T.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(params: T.DidChangeTextDocumentParams) -> None:
        doc = params.text_document
        services.documents.changed(doc.uri, doc.version, text_of(doc.uri))
        path = path_of(doc.uri)
        if path is not None and services.bundles.for_path(path):
            services.refresh.schedule()

    @ls.feature(T.TEXT_DOCUMENT_DID_SAVE)
    def did_save(params: T.DidSaveTextDocumentParams) -> None:
        services.refresh.schedule()

    @ls.feature(T.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(params: T.DidCloseTextDocumentParams) -> None:
        services.documents.closed(params.text_document.uri)
        services.refresh.schedule()
