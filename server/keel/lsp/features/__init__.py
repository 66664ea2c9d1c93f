"""The LSP surface, one module per feature; each exports ``register(server)``.

Handlers are closures over the server's collaborators (:class:`~keel.lsp.services.Services`;
no module state) and stay thin: validate, call one service, convert the result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keel.lsp.features import (
    code_actions,
    code_lens,
    commands,
    diagnostics,
    documents,
    hover,
    lifecycle,
)

if TYPE_CHECKING:
    from pygls.lsp.server import LanguageServer

    from keel.lsp.services import Services


def register_all(ls: LanguageServer, services: Services) -> None:
    for module in (lifecycle, documents, diagnostics, commands, code_actions, hover, code_lens):
        module.register(ls, services)
