"""Hover: the energy report of the node that owns the file (pending or committed).

Anywhere in a file a node owns, the hover is a Markdown report: V_syn, V_str, V_log,
V_boot, V_sheaf, V(x), epsilon, status, attempts, and the evidence behind every non-zero
component, quoted. A pending bundle's report is re-scored on every hover from the latest
forwarded editor diagnostics, so it reflects them as soon as they arrive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types as T

from keel.lsp.convert import energy_markdown, uri_to_path

if TYPE_CHECKING:
    from pygls.lsp.server import LanguageServer

    from keel.lsp.services import Services


def register(ls: LanguageServer, services: Services) -> None:
    @ls.feature(T.TEXT_DOCUMENT_HOVER)
    def hover(params: T.HoverParams) -> T.Hover | None:
        root = services.workspace.root
        path = uri_to_path(params.text_document.uri, root) if root else None
        if path is None:
            return None
        pending = services.bundles.for_path(path)
        if pending:
            bundle = pending[-1]
            view = services.sessions.views.get(bundle.session_id)
            node = view.nodes.get(bundle.node_id) if view else None
            heading = f"`{bundle.node_id}` {bundle.title}"
            status = f"awaiting approval (bundle `{bundle.id}`)"
            energy = services.scoring.pending_energy(bundle)
            epsilon = services.scoring.epsilon_of(bundle.session_id)
            attempts = node.attempts if node else 1
        else:
            found = services.sessions.view_owning(path)
            if found is None:
                return None
            view, node = found
            measured = services.scoring.node_energy(view, node)
            if measured is None:
                value = (
                    f"**Keel** `{node.id}` {node.title}\n\nstatus: {node.state}, not measured yet"
                )
                return T.Hover(contents=T.MarkupContent(kind=T.MarkupKind.Markdown, value=value))
            energy = measured
            heading, status = f"`{node.id}` {node.title}", node.state.replace("_", " ")
            epsilon, attempts = view.epsilon, node.attempts
        value = energy_markdown(heading, status, energy, epsilon, attempts)
        return T.Hover(contents=T.MarkupContent(kind=T.MarkupKind.Markdown, value=value))
