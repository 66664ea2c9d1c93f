"""V_syn from a real type checker's language server, with Keel as the LSP *client*.

The editor's own diagnostics are the first choice for V_syn
(docs/explanation/editor-diagnostics.md); headless, Keel asks the checker the way an editor
would: start the server (``ty server``, ``basedpyright-langserver --stdio``,
``pyright-langserver --stdio``), ``initialize`` with the root and our capabilities,
``initialized``, ``didOpen`` each file, then collect diagnostics:


* **pull** (``textDocument/diagnostic``, one request per file) when the server advertises a
  static ``diagnosticProvider`` or registers one dynamically. We declare dynamic registration,
  so ``ty server`` (0.0.105) and basedpyright/pyright all register pull diagnostics right
  after ``initialized`` (ty advertises it statically to clients that cannot register). None of
  them publishes once pull is in use.
* **push** (``textDocument/publishDiagnostics``) for a server that does neither: the first
  publication of each opened file (at the opened version) is taken as its answer. That is a
  fallback for push-only servers: pyright, when it does push, publishes a provisional empty
  list before analysing, which is why pull is always preferred.

Every wait is raced against an overall timeout and against the server failing (process exit,
a message that does not deserialise), never a fixed sleep. Whatever goes wrong surfaces as
:class:`LspCheckError`, which the plugin turns into its CLI fallback. The server is always
asked to ``shutdown``/``exit`` and its process group is killed if it lingers.

The server runs in its own session (process group) with the scrubbed environment of
:mod:`keel.process`, inside the runner's sandbox (``confine``: its command line is wrapped like
every other command's); pygls' :class:`~pygls.lsp.client.LanguageClient` owns its pipes, which is
why this one subprocess does not go through the runner itself.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union

import attrs
from cattrs import Converter
from lsprotocol import types
from pygls.exceptions import (
    FeatureNotificationError,
    FeatureRequestError,
    JsonRpcException,
    PyglsError,
)
from pygls.lsp.client import LanguageClient
from pygls.protocol import default_converter

from keel import __version__
from keel.engine.models import Residual
from keel.plugins.base import diagnostic_residual
from keel.process import kill_process_group, wait_for_exit

#: Wraps a command line so it runs sandboxed (``ToolRunner.confine``).
Confine = Callable[..., list[str]]

log = logging.getLogger(__name__)

T = TypeVar("T")

_SHUTDOWN_S = 3.0
_STDERR_TAIL_BYTES = 4096
_RETRY_CODES = frozenset({-32802, -32801})  # ServerCancelled, ContentModified: ask again
_PULL_ATTEMPTS = 5
_PYRIGHT_PROGRESS = ("pyright/beginProgress", "pyright/reportProgress", "pyright/endProgress")
_SEVERITY_NAMES = {
    types.DiagnosticSeverity.Error: "error",
    types.DiagnosticSeverity.Warning: "warning",
    types.DiagnosticSeverity.Information: "info",
    types.DiagnosticSeverity.Hint: "hint",
}


class LspCheckError(Exception):
    """The LSP route failed (missing binary, crash, timeout, protocol error)."""


@dataclass(frozen=True)
class LspServer:
    """How to start one checker's language server and what to answer its questions with.

    ``settings`` answers ``workspace/configuration``: each requested section (``"ty"``,
    ``"python.analysis"``) is looked up as a dotted path in it.
    """

    name: str
    argv: tuple[str, ...]
    language_id: str = "python"
    settings: Mapping[str, Any] = field(default_factory=dict)
    initialization_options: Any = None


@dataclass(frozen=True)
class LspOutcome:
    """The diagnostics of each requested file (relative path) and the mode that got them."""

    diagnostics: dict[str, list[types.Diagnostic]]
    mode: str  # "pull" or "push"


@functools.cache
def _converter() -> Converter:
    """pygls' converter, plus a hook lsprotocol 2025.0.0 lacks; one per process.

    ``ty server`` advertises ``notebookDocumentSync`` with a cell filter whose optional
    ``notebook`` field has no structure hook, so the whole ``InitializeResult`` fails to
    deserialise. We never read it; structure it like its non-optional form.

    Shared by every checker client: cattrs generates its (un)structure functions on first
    use per converter, some 0.2 s of CPU on the event loop; a fresh converter per check
    would pay that on every check, stalling the language server's other requests.
    """
    converter: Converter = default_converter()  # type: ignore[no-untyped-call]
    optional_type = attrs.fields(types.NotebookDocumentFilterWithCells).notebook.type
    inner: Any = Union[  # noqa: UP007 - a runtime type object handed to cattrs
        str,
        types.NotebookDocumentFilterNotebookType,
        types.NotebookDocumentFilterScheme,
        types.NotebookDocumentFilterPattern,
    ]

    def structure(value: Any, _type: Any) -> Any:
        return None if value is None else converter.structure(value, inner)

    converter.register_structure_hook(optional_type, structure)
    return converter


def _lookup(settings: Mapping[str, Any], section: str | None) -> Any:
    if not section:
        return dict(settings)
    node: Any = settings
    for part in section.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


class _Client(LanguageClient):
    """A pygls client that records failures and published diagnostics for :class:`_Session`."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__("keel", __version__, converter_factory=_converter)
        self.failure: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.published: dict[str, types.PublishDiagnosticsParams] = {}
        self.publish_event = asyncio.Event()
        self.pull_registered = asyncio.Event()
        self._install_handlers(settings)

    def fail(self, reason: str) -> None:
        if not self.failure.done():
            self.failure.set_result(reason)

    def report_server_error(
        self, error: Exception, source: type[PyglsError] | type[JsonRpcException]
    ) -> None:
        if source in (FeatureRequestError, FeatureNotificationError):
            log.debug("language server sent something we do not handle: %s", error)
            return
        self.fail(f"protocol error: {error!r}")

    async def server_exit(self, server: asyncio.subprocess.Process) -> None:
        self.fail(f"server exited with code {server.returncode}")

    def _install_handlers(self, settings: Mapping[str, Any]) -> None:
        # pygls stores attributes on handlers, so they must be plain functions, one per method.
        def on_publish(params: types.PublishDiagnosticsParams) -> None:
            self.published[params.uri] = params
            self.publish_event.set()

        def on_configuration(params: types.ConfigurationParams) -> list[Any]:
            return [_lookup(settings, item.section) for item in params.items]

        def on_register(params: types.RegistrationParams) -> None:
            methods = {registration.method for registration in params.registrations}
            if types.TEXT_DOCUMENT_DIAGNOSTIC in methods:
                self.pull_registered.set()

        self.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)(on_publish)
        self.feature(types.WORKSPACE_CONFIGURATION)(on_configuration)
        self.feature(types.CLIENT_REGISTER_CAPABILITY)(on_register)
        for method in (
            types.WINDOW_LOG_MESSAGE,
            types.WINDOW_SHOW_MESSAGE,
            types.PROGRESS,
            types.TELEMETRY_EVENT,
            *_PYRIGHT_PROGRESS,
        ):
            self.feature(method)(_make_ignore(method))
        for method in (
            types.CLIENT_UNREGISTER_CAPABILITY,
            types.WINDOW_WORK_DONE_PROGRESS_CREATE,
            types.WORKSPACE_DIAGNOSTIC_REFRESH,
        ):
            self.feature(method)(_make_ignore(method))


def _make_ignore(method: str) -> Callable[[Any], None]:
    def ignore(params: Any) -> None:
        log.debug("language server %s: %s", method, params)

    return ignore


def _capabilities() -> types.ClientCapabilities:
    return types.ClientCapabilities(
        workspace=types.WorkspaceClientCapabilities(configuration=True, workspace_folders=True),
        text_document=types.TextDocumentClientCapabilities(
            synchronization=types.TextDocumentSyncClientCapabilities(),
            publish_diagnostics=types.PublishDiagnosticsClientCapabilities(version_support=True),
            diagnostic=types.DiagnosticClientCapabilities(
                dynamic_registration=True, related_document_support=False
            ),
        ),
    )


@dataclass(frozen=True)
class _Document:
    relpath: str
    uri: str
    text: str


def _read_documents(root: Path, files: Sequence[str]) -> tuple[Path, list[_Document]]:
    """The resolved root (URIs must match what the server sees) and each file's text.

    A file whose links lead outside ``root`` is sent empty: Keel reads it unconfined, and a
    sandboxed command may have left a link to a secret there.
    """
    root = root.resolve()
    documents = []
    for relpath in files:
        path = root / relpath
        inside = path.resolve().is_relative_to(root)
        text = path.read_text(encoding="utf-8", errors="replace") if inside else ""
        documents.append(_Document(relpath, path.as_uri(), text))
    return root, documents


class _Session:
    """One server process, from start to a guaranteed end."""

    def __init__(
        self,
        server: LspServer,
        root: Path,
        env: Mapping[str, str],
        confine: Confine | None = None,
    ) -> None:
        self.server = server
        self.root = root
        self.env = dict(env)
        self.confine = confine
        self.client = _Client(server.settings)
        self.process: asyncio.subprocess.Process | None = None
        self._stderr_tail: collections.deque[bytes] = collections.deque()
        self._stderr_task: asyncio.Task[None] | None = None
        self._exit_sent = False
        self.hung = False  # set on timeout: no polite shutdown for a server that stopped answering

    async def run(self, documents: Sequence[_Document]) -> LspOutcome:
        await self._start()
        result = await self._guard(self.client.initialize_async(self._initialize_params()))
        self.client.initialized(types.InitializedParams())
        for document in documents:
            self.client.text_document_did_open(self._did_open(document))
        if result.capabilities.diagnostic_provider is not None:
            outcome = LspOutcome(await self._pull(documents), "pull")
        else:
            outcome = await self._dynamic_or_push(documents)
        await self._guard(self.client.shutdown_async(None))
        self.client.exit(None)
        self._exit_sent = True
        return outcome

    def stderr_tail(self) -> str:
        return b"".join(self._stderr_tail).decode("utf-8", errors="replace").strip()

    async def _start(self) -> None:
        argv = list(self.server.argv)
        if self.confine is not None:
            argv = self.confine(argv, self.root, self.env)
        try:
            await self.client.start_io(
                *argv, cwd=str(self.root), env=self.env, start_new_session=True
            )
        except OSError as exc:
            raise LspCheckError(f"cannot start {self.server.argv[0]}: {exc}") from exc
        self.process = self.client._server
        if self.process is not None and self.process.stderr is not None:
            self._stderr_task = asyncio.create_task(self._drain_stderr(self.process.stderr))

    async def _drain_stderr(self, stream: asyncio.StreamReader) -> None:
        """Keep the server's stderr flowing (a full pipe would block it); keep the tail."""
        size = 0
        while chunk := await stream.read(4096):
            self._stderr_tail.append(chunk)
            size += len(chunk)
            while size > _STDERR_TAIL_BYTES and len(self._stderr_tail) > 1:
                size -= len(self._stderr_tail.popleft())

    def _initialize_params(self) -> types.InitializeParams:
        uri = self.root.as_uri()
        return types.InitializeParams(
            # A sandboxed server cannot see Keel's pid (its own pid namespace): none, so it
            # does not exit on finding its "parent" gone. bwrap ends it with Keel anyway.
            process_id=os.getpid() if self.confine is None else None,
            root_uri=uri,
            root_path=str(self.root),
            workspace_folders=[types.WorkspaceFolder(uri=uri, name=self.root.name or "root")],
            capabilities=_capabilities(),
            initialization_options=self.server.initialization_options,
            client_info=types.ClientInfo(name="keel", version=__version__),
        )

    def _did_open(self, document: _Document) -> types.DidOpenTextDocumentParams:
        item = types.TextDocumentItem(
            uri=document.uri,
            language_id=self.server.language_id,
            version=1,
            text=document.text,
        )
        return types.DidOpenTextDocumentParams(text_document=item)

    async def _guard(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` unless the server fails first."""
        task = asyncio.ensure_future(awaitable)
        failure: asyncio.Future[Any] = self.client.failure
        done, _ = await asyncio.wait({task, failure}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        raise LspCheckError(self.client.failure.result())

    async def _pull(self, documents: Sequence[_Document]) -> dict[str, list[types.Diagnostic]]:
        reports = await asyncio.gather(*(self._pull_one(doc) for doc in documents))
        return {doc.relpath: items for doc, items in zip(documents, reports, strict=True)}

    async def _pull_one(self, document: _Document) -> list[types.Diagnostic]:
        params = types.DocumentDiagnosticParams(
            text_document=types.TextDocumentIdentifier(uri=document.uri)
        )
        for attempt in range(_PULL_ATTEMPTS):
            try:
                report = await self._guard(self.client.text_document_diagnostic_async(params))
            except JsonRpcException as exc:
                if exc.code not in _RETRY_CODES or attempt == _PULL_ATTEMPTS - 1:
                    raise
                continue
            return list(getattr(report, "items", None) or [])
        return []  # pragma: no cover - the loop returns or raises

    async def _dynamic_or_push(self, documents: Sequence[_Document]) -> LspOutcome:
        """Pull once the server registers pull diagnostics, else take what it publishes.

        pyright and basedpyright register ``textDocument/diagnostic`` dynamically right after
        ``initialized`` (and then publish nothing); a push-only server publishes instead.
        Whichever comes first decides.
        """
        registered = asyncio.ensure_future(self.client.pull_registered.wait())
        published = asyncio.ensure_future(self._wait_published(documents))
        try:
            await self._guard(
                asyncio.wait({registered, published}, return_when=asyncio.FIRST_COMPLETED)
            )
        finally:
            for task in (registered, published):
                task.cancel()
        if self.client.pull_registered.is_set():
            return LspOutcome(await self._pull(documents), "pull (dynamically registered)")
        return LspOutcome(published.result(), "push")

    async def _wait_published(
        self, documents: Sequence[_Document]
    ) -> dict[str, list[types.Diagnostic]]:
        wanted = {doc.uri: doc for doc in documents}
        while missing := [uri for uri in wanted if not self._published_current(uri)]:
            log.debug("waiting for diagnostics of %d file(s)", len(missing))
            self.client.publish_event.clear()
            await self._guard(self.client.publish_event.wait())
        return {
            doc.relpath: list(self.client.published[uri].diagnostics) for uri, doc in wanted.items()
        }

    def _published_current(self, uri: str) -> bool:
        params = self.client.published.get(uri)
        return params is not None and params.version in (None, 1)

    async def close(self) -> None:
        """End the server: ``shutdown``/``exit`` if not done, then make sure the group is gone."""
        process = self.process
        if process is None:
            return
        if process.returncode is None and not self._exit_sent and not self.hung:
            await self._polite_shutdown()
        if self._exit_sent:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wait_for_exit(process), _SHUTDOWN_S)
        await kill_process_group(process, grace_s=1.0)
        if process.stdin is not None:
            process.stdin.close()  # our end of its input: lets asyncio finish the transport
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.stop(), _SHUTDOWN_S)  # type: ignore[no-untyped-call]
        if self._stderr_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._stderr_task, 1.0)

    async def _polite_shutdown(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.shutdown_async(None), _SHUTDOWN_S)
            self.client.exit(None)
            self._exit_sent = True


async def collect_diagnostics(
    server: LspServer,
    root: Path,
    files: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout_s: float,
    confine: Confine | None = None,
) -> LspOutcome:
    """Diagnostics of ``files`` (relative to ``root``) from ``server``; raises LspCheckError.

    ``confine`` wraps the server's command line in the sandbox (``ToolRunner.confine``).
    """
    root, documents = await asyncio.to_thread(_read_documents, root, files)
    session = _Session(server, root, env, confine)
    try:
        async with asyncio.timeout(timeout_s):
            return await session.run(documents)
    except TimeoutError as exc:
        session.hung = True
        reason = f"{server.name} language server timed out after {timeout_s:g} s"
        raise LspCheckError(_with_stderr(reason, session)) from exc
    except LspCheckError as exc:
        raise LspCheckError(_with_stderr(f"{server.name}: {exc}", session)) from exc
    except Exception as exc:
        reason = f"{server.name} language server failed: {exc!r}"
        raise LspCheckError(_with_stderr(reason, session)) from exc
    finally:
        await session.close()


def _with_stderr(reason: str, session: _Session) -> str:
    tail = session.stderr_tail()
    return f"{reason} (stderr: {tail[-500:]})" if tail else reason


def to_residuals(
    source: str, relpath: str, diagnostics: Sequence[types.Diagnostic]
) -> list[Residual]:
    """Errors (magnitude 1.0) and warnings (0.3) as V_syn residuals; info and hints dropped."""
    residuals = []
    for diagnostic in diagnostics:
        severity = _SEVERITY_NAMES.get(
            diagnostic.severity or types.DiagnosticSeverity.Error, "error"
        )
        code = diagnostic.code
        residual = diagnostic_residual(
            source=source,
            severity=severity,
            message=diagnostic.message,
            path=relpath,
            line=diagnostic.range.start.line + 1,
            rule=None if code is None else str(code),
        )
        if residual is not None:
            residuals.append(residual)
    return residuals
