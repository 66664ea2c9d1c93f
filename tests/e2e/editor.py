"""The test editor: a pytest-lsp client that behaves like VS Code or Neovim toward Keel.

It answers every server-to-client request Keel sends (applyEdit, codeLens refresh,
workDoneProgress/create, configuration, showMessageRequest) and records it; it applies
workspace edits the way editors do (a ``CreateFile`` creates the file on disk at once, text
edits change the open buffer, which it then reports with ``didChange``); it records Keel's
notifications in lists a test can wait on with a deadline (never by sleeping) and keeps
every error it sees so that a test fails on any.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union

from lsprotocol import types as T
from pygls.protocol import default_converter
from pytest_lsp import LanguageClient
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

from tests.fakes.model_server import FakeModelServer

KEEL_SERVE = [sys.executable, "-m", "keel", "serve"]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test User",
    "GIT_AUTHOR_EMAIL": "user@example.com",
    "GIT_COMMITTER_NAME": "Test User",
    "GIT_COMMITTER_EMAIL": "user@example.com",
}
WAIT_S = 60.0
ItemT = TypeVar("ItemT")


class Recorder(list[ItemT]):
    """A list that coroutines can wait on: ``await r.wait_for(predicate)``."""

    def __init__(self) -> None:
        super().__init__()
        self._waiters: list[tuple[Callable[[list[ItemT]], bool], asyncio.Future[None]]] = []

    def add(self, item: ItemT) -> None:
        self.append(item)
        for predicate, future in list(self._waiters):
            if not future.done() and predicate(self):
                future.set_result(None)

    async def wait_for(
        self, predicate: Callable[[list[ItemT]], bool], what: str, wait_s: float = WAIT_S
    ) -> None:
        if predicate(self):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        try:
            await asyncio.wait_for(future, wait_s)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; have {list(self)!r}") from None


class KeelTestClient(LanguageClient):
    """pytest-lsp's client, keeping every error it sees so a test can assert there is none."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen_errors: list[str] = []

    def report_server_error(self, error: Exception, source: Any) -> None:
        self.seen_errors.append(f"{getattr(source, '__name__', source)}: {error}")
        super().report_server_error(error, source)


def converter() -> Any:
    """pygls's converter, but a code action with a ``command`` stays a CodeAction.

    lsprotocol 2025.0.0 decodes any ``Command | CodeAction`` item that has a ``command`` key
    as a Command (stringifying the nested object); real editors do not, so neither do we.
    """
    base = default_converter()

    def command_or_action(value: Any, _: Any) -> T.Command | T.CodeAction:
        kind = T.Command if isinstance(value.get("command"), str) else T.CodeAction
        return base.structure(value, kind)

    base.register_structure_hook(T.Command | T.CodeAction, command_or_action)
    base.register_structure_hook(Union[T.Command, T.CodeAction], command_or_action)  # noqa: UP007
    return base


def make_client() -> KeelTestClient:
    client = KeelTestClient(converter_factory=converter)
    mine = (T.WORKSPACE_CONFIGURATION, T.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS, T.WINDOW_SHOW_MESSAGE)
    defaults = {k: v for k, v in DEFAULT_CLIENT_FEATURES.items() if k not in mine}
    register_lsp_features(client, defaults)
    return client


@dataclass
class Keel:
    """One editor connected to one ``keel serve`` process."""

    client: KeelTestClient
    root: Path
    model: FakeModelServer
    preset: str
    proposals: Recorder[dict[str, Any]] = field(default_factory=Recorder)
    changes: Recorder[dict[str, Any]] = field(default_factory=Recorder)
    edits: Recorder[T.ApplyWorkspaceEditParams] = field(default_factory=Recorder)
    published: Recorder[T.PublishDiagnosticsParams] = field(default_factory=Recorder)
    shown: Recorder[T.ShowMessageParams] = field(default_factory=Recorder)
    configuration: Any = None
    # While set and not yet released, ``workspace/configuration`` waits for it to be set.
    hold_configuration: asyncio.Event | None = None
    questions: list[T.ShowMessageRequestParams] = field(default_factory=list)
    configuration_requests: int = 0
    lens_refreshes: Recorder[None] = field(default_factory=Recorder)
    apply: bool = True
    # While set and not yet released, the editor applies an edit but holds its reply (an
    # editor still busy answering ``workspace/applyEdit``); ``release.set()`` sends it.
    release: asyncio.Event | None = None
    # What the editor's own language servers do once an edit is applied (forward diagnostics).
    after_apply: Callable[[T.WorkspaceEdit], None] | None = None
    versions: dict[str, int] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)

    def uri(self, path: str) -> str:
        return (self.root / path).as_uri()

    async def command(self, name: str, *arguments: Any) -> Any:
        params = T.ExecuteCommandParams(command=name, arguments=list(arguments) or None)
        return plain(await self.client.workspace_execute_command_async(params))

    async def hover(self, path: str, line: int = 0) -> str:
        params = T.HoverParams(
            text_document=T.TextDocumentIdentifier(uri=self.uri(path)),
            position=T.Position(line=line, character=0),
        )
        result = await self.client.text_document_hover_async(params)
        assert result is not None, f"no hover in {path}"
        assert isinstance(result.contents, T.MarkupContent)
        return result.contents.value

    async def code_actions(
        self, path: str, diagnostics: Iterable[T.Diagnostic] = (), line: int = 0
    ) -> list[T.CodeAction]:
        where = T.Range(T.Position(line, 0), T.Position(line, 0))
        params = T.CodeActionParams(
            text_document=T.TextDocumentIdentifier(uri=self.uri(path)),
            range=where,
            context=T.CodeActionContext(diagnostics=list(diagnostics)),
        )
        result = await self.client.text_document_code_action_async(params)
        return [a for a in result or [] if isinstance(a, T.CodeAction)]

    def open(self, path: str, text: str) -> int:
        self.versions[path], self.texts[path] = 1, text
        item = T.TextDocumentItem(uri=self.uri(path), language_id="python", version=1, text=text)
        self.client.text_document_did_open(T.DidOpenTextDocumentParams(text_document=item))
        return 1

    def change(self, path: str, text: str) -> int:
        version = self.versions[path] = self.versions[path] + 1
        self.texts[path] = text
        document = T.VersionedTextDocumentIdentifier(uri=self.uri(path), version=version)
        change = T.TextDocumentContentChangeWholeDocument(text=text)
        params = T.DidChangeTextDocumentParams(text_document=document, content_changes=[change])
        self.client.text_document_did_change(params)
        return version

    def forward(self, path: str, diagnostics: list[dict[str, Any]], version: int | None) -> None:
        params: dict[str, Any] = {"uri": self.uri(path), "diagnostics": diagnostics}
        if version is not None:
            params["version"] = version
        self.client.protocol.notify("keel/editorDiagnostics", params)

    async def proposal(self, node: str, count: int = 1) -> dict[str, Any]:
        """The ``count``-th ``keel/bundleProposed`` of ``node``."""

        def mine(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [p for p in items if p["nodeId"] == node]

        await self.proposals.wait_for(lambda i: len(mine(i)) >= count, f"bundle of {node}")
        return mine(self.proposals)[count - 1]


def error(line: int, message: str, source: str = "Pylance") -> dict[str, Any]:
    """An LSP error diagnostic as an editor would forward it."""
    return {
        "range": {"start": {"line": line, "character": 0}, "end": {"line": line, "character": 1}},
        "message": message,
        "severity": 1,
        "source": source,
    }


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **GIT_ENV},
    ).stdout


def install_handlers(keel: Keel) -> None:
    client = keel.client

    @client.feature(T.WORKSPACE_APPLY_EDIT)
    async def apply_edit(params: T.ApplyWorkspaceEditParams) -> T.ApplyWorkspaceEditResult:
        if not keel.apply:
            keel.edits.add(params)
            return T.ApplyWorkspaceEditResult(applied=False, failure_reason="declined by the user")
        _apply_like_an_editor(keel, params.edit)
        if keel.after_apply is not None:
            keel.after_apply(params.edit)
        keel.edits.add(params)
        if keel.release is not None:
            await keel.release.wait()
        return T.ApplyWorkspaceEditResult(applied=True)

    @client.feature(T.WORKSPACE_CODE_LENS_REFRESH)
    def lens_refresh(params: None) -> None:
        keel.lens_refreshes.add(None)

    @client.feature(T.WINDOW_SHOW_MESSAGE_REQUEST)
    def ask(params: T.ShowMessageRequestParams) -> T.MessageActionItem | None:
        keel.questions.append(params)
        return None

    @client.feature(T.WORKSPACE_CONFIGURATION)
    async def configuration(params: T.ConfigurationParams) -> list[Any]:
        keel.configuration_requests += 1
        if keel.hold_configuration is not None:
            await keel.hold_configuration.wait()
        return [keel.configuration if i.section == "keel" else None for i in params.items]

    @client.feature(T.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def publish(params: T.PublishDiagnosticsParams) -> None:
        client.diagnostics[params.uri] = params.diagnostics
        keel.published.add(params)

    @client.feature(T.WINDOW_SHOW_MESSAGE)
    def show(params: T.ShowMessageParams) -> None:
        client.messages.append(params)
        keel.shown.add(params)

    @client.feature("keel/bundleProposed")
    def proposed(params: Any) -> None:
        keel.proposals.add(plain(params))

    @client.feature("keel/sessionChanged")
    def changed(params: Any) -> None:
        keel.changes.add(plain(params))


def plain(value: Any) -> Any:
    """pygls hands untyped JSON (LSPAny, unknown notifications) over as namedtuples."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _apply_like_an_editor(keel: Keel, edit: T.WorkspaceEdit) -> None:
    """What VS Code and Neovim do with the edit: a ``CreateFile`` creates the file on disk,
    empty, at once (before Keel's ledger writes it); a ``DeleteFile`` deletes it; text edits
    change the open buffer, which the editor then reports with ``didChange``."""
    for change in edit.document_changes or []:
        if isinstance(change, T.CreateFile):
            target = Path(change.uri.removeprefix("file://"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch(exist_ok=True)
        elif isinstance(change, T.DeleteFile):
            Path(change.uri.removeprefix("file://")).unlink(missing_ok=True)
        elif isinstance(change, T.TextDocumentEdit):
            path = Path(change.text_document.uri.removeprefix("file://"))
            relative = path.relative_to(keel.root).as_posix()
            assert change.text_document.version == keel.versions[relative], "stale edit"
            keel.change(relative, _edited(keel.texts[relative], change.edits))


def _edited(text: str, edits: Iterable[Any]) -> str:
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(position: T.Position) -> int:
        if position.line >= len(lines):
            return len(text)
        return starts[position.line] + position.character

    for item in sorted(edits, key=lambda e: offset(e.range.start), reverse=True):
        text = text[: offset(item.range.start)] + item.new_text + text[offset(item.range.end) :]
    return text
