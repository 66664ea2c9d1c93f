"""Code actions: review a pending bundle where it changes the file, fix an error with Keel.

In a file touched by a pending bundle: "Keel: Approve <title>", "Keel: Reject <title>" and
"Keel: Show diff", each carrying the matching ``keel.server.*`` command and the bundle id.
On an error diagnostic anywhere (the request's own diagnostics, or the editor's forwarded
ones at that line): "Keel: Fix with agent", which starts a session whose task names the
file, the line and the message, with a ``scope`` that holds the plan to one node owning the
file (a plan that sprawls is sent back to the architect).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types as T

from keel.lsp.convert import uri_to_path
from keel.lsp.documents import EditorDiagnostics

if TYPE_CHECKING:
    from pygls.lsp.server import LanguageServer

    from keel.lsp.services import Services

KINDS = [T.CodeActionKind.QuickFix, T.CodeActionKind.Refactor]


def fix_task(path: str, line: int, message: str, source: str | None) -> str:
    """The task of a "Fix with agent" session: one node, this file, this error."""
    origin = f" (reported by {source})" if source else ""
    head = (message.strip().splitlines() or [""])[0][:500]
    return (
        f"Fix the error in {path} at line {line + 1}{origin}: {head}\n"
        f"Plan exactly one node that owns {path} and changes only what the fix needs."
    )


def _wanted(kind: str, only: list[str] | None) -> bool:
    return not only or any(kind == o or kind.startswith(o + ".") for o in only)


def register(ls: LanguageServer, services: Services) -> None:
    @ls.feature(T.TEXT_DOCUMENT_CODE_ACTION, T.CodeActionOptions(code_action_kinds=KINDS))
    def code_actions(params: T.CodeActionParams) -> list[T.CodeAction] | None:
        root = services.workspace.root
        path = uri_to_path(params.text_document.uri, root) if root else None
        if path is None:
            return None
        only = [str(k) for k in params.context.only] if params.context.only else None
        actions: list[T.CodeAction] = []
        if _wanted(T.CodeActionKind.Refactor, only):
            for bundle in services.bundles.for_path(path):
                argument = [{"bundleId": bundle.id}]
                for title, command in (
                    (f"Keel: Approve {bundle.title}", "keel.server.approve"),
                    (f"Keel: Reject {bundle.title}", "keel.server.reject"),
                    ("Keel: Show diff", "keel.server.diff"),
                ):
                    actions.append(
                        T.CodeAction(
                            title=title,
                            kind=T.CodeActionKind.Refactor,
                            command=T.Command(title=title, command=command, arguments=argument),
                        )
                    )
        if _wanted(T.CodeActionKind.QuickFix, only):
            actions += fixes(services.editor, path, params)
        return actions


def fixes(editor: EditorDiagnostics, path: str, params: T.CodeActionParams) -> list[T.CodeAction]:
    start, end = params.range.start.line, params.range.end.line
    found: list[tuple[int, str, str | None, T.Diagnostic | None]] = []
    for diagnostic in params.context.diagnostics:
        if diagnostic.severity in (None, T.DiagnosticSeverity.Error):
            found.append(
                (diagnostic.range.start.line, diagnostic.message, diagnostic.source, diagnostic)
            )
    report = editor.latest(path)
    if not found and report is not None:
        for item in report.diagnostics:
            if item.severity in (None, 1) and start <= item.line <= end:
                found.append((item.line, item.message, item.source, None))
    actions = []
    for line, message, source, origin in found[:3]:
        task = fix_task(path, line, message, source)
        actions.append(
            T.CodeAction(
                title="Keel: Fix with agent",
                kind=T.CodeActionKind.QuickFix,
                diagnostics=[origin] if origin else None,
                command=T.Command(
                    title="Keel: Fix with agent",
                    command="keel.server.startSession",
                    arguments=[
                        {
                            "task": task,
                            "scope": {"files": [params.text_document.uri], "maxNodes": 1},
                        }
                    ],
                ),
            )
        )
    return actions
