"""What the feature handlers are given: the server's collaborators, each built once.

:class:`~keel.lsp.server.KeelLanguageServer` builds every collaborator in its constructor,
each with the narrow collaborators it needs, and hands this bundle of them to the feature
modules' ``register`` functions. Only the handlers see all of them; no service does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from keel.lsp.approval import Approval
from keel.lsp.bundles import BundleRegistry
from keel.lsp.client import ClientPort, Spawn
from keel.lsp.documents import DocumentTracker, EditorDiagnostics
from keel.lsp.modes import Modes
from keel.lsp.progress import ProgressReporter
from keel.lsp.refresh import Refresher
from keel.lsp.review import Review
from keel.lsp.scoring import Scoring
from keel.lsp.sessions import Sessions
from keel.lsp.workspace import Workspace


@dataclass(frozen=True)
class Services:
    """The collaborators of the LSP surface (``keel.lsp.features``)."""

    workspace: Workspace
    client: ClientPort
    spawn: Spawn
    documents: DocumentTracker
    editor: EditorDiagnostics
    bundles: BundleRegistry
    scoring: Scoring
    sessions: Sessions
    approval: Approval
    review: Review
    modes: Modes
    reporter: ProgressReporter
    refresh: Refresher
    #: Start sending log records to the client (it is initialized).
    connect_log: Callable[[], None]
    #: Stop every session and close the workspace (``shutdown``).
    close: Callable[[], Awaitable[None]]
