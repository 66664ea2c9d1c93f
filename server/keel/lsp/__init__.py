"""The language server (``keel serve``): the engine inside the editor, over LSP.

Layers: ``keel.app`` builds a :class:`KeelLanguageServer` with an injected workspace opener
(``keel.lsp`` imports no adapter and never ``keel.app``); ``keel.cli`` starts it on stdio or
TCP. See ``docs/reference/lsp.md`` for the protocol and
``docs/explanation/editor-diagnostics.md`` for how the editor's diagnostics become V_syn.
"""

from __future__ import annotations

from keel.lsp.log import WindowLogMessageHandler
from keel.lsp.server import KeelLanguageServer
from keel.lsp.transport import serve_stdio, serve_tcp

__all__ = ["KeelLanguageServer", "WindowLogMessageHandler", "serve_stdio", "serve_tcp"]
