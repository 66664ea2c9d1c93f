"""The LSP surface, one module per feature; each exports ``register(server)``.

Handlers are closures over the server (no module state) and stay thin: validate, call the
server's services, convert the result.
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
    from keel.lsp.server import KeelLanguageServer


def register_all(server: KeelLanguageServer) -> None:
    for module in (lifecycle, documents, diagnostics, commands, code_actions, hover, code_lens):
        module.register(server)
