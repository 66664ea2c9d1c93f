"""``keel.server.plan`` and ``keel.server.explain``: the read-only modes in the editor.

Each request resolves the settings a session would get, opens the read-only modes the
composition root injected (model clients and plugins; no store, ledger or lock, so they run
beside a session and never touch the workspace), and answers with the result and its Markdown.
A work-done progress token shows the wait when the client supports it. Model calls are
awaited and the workspace walk runs in a thread, so the loop keeps serving hovers and other
requests meanwhile.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from lsprotocol import types as T

from keel.engine.modes import Explained, Explored, explanation_markdown, plan_markdown
from keel.engine.ports import KeelError
from keel.lsp.client import ClientPort
from keel.lsp.convert import path_to_uri, uri_to_path
from keel.lsp.errors import invalid
from keel.lsp.host import ModesOpener
from keel.lsp.payloads import (
    Citation,
    DroppedCitation,
    ExplainResult,
    ExploreCall,
    InvalidAttempt,
    PlanResult,
)
from keel.lsp.workspace import Workspace

log = logging.getLogger(__name__)
_tokens = itertools.count(1)


class Modes:
    """``keel.server.plan`` and ``keel.server.explain`` over the injected read-only modes."""

    def __init__(
        self, workspace: Workspace, client: ClientPort, open_modes: ModesOpener | None
    ) -> None:
        self._workspace, self._client, self._open = workspace, client, open_modes

    def _root(self) -> Path:
        if self._workspace.root is None:
            raise KeelError("Keel needs a workspace folder: open a folder, not a single file")
        if self._open is None:
            raise KeelError("plan and explain are not available in this server")
        return self._workspace.root

    def _focus(self, root: Path, uri: str | None) -> tuple[str, ...]:
        if uri is None:
            return ()
        path = uri_to_path(uri, root)
        if path is None:
            raise invalid(f"file {uri} is not a file of the workspace")
        return (path,)

    @asynccontextmanager
    async def _progress(self, title: str) -> AsyncIterator[Callable[[Explored], None]]:
        """Begin and end a work-done progress around the work (when the client takes one); what
        it yields reports each of the architect's tool calls on it ("exploring: ...")."""
        token: str | None = None
        if self._client.supports("window.work_done_progress", False):
            token = f"keel-mode-{next(_tokens)}"
            try:
                await self._client.create_progress(token)
            except Exception as exc:  # refused or gone: no progress, no harm
                log.debug("progress token %s not created: %s", token, exc)
                token = None
        if token is not None:
            self._client.notify(
                T.PROGRESS, T.ProgressParams(token, T.WorkDoneProgressBegin(title=title))
            )
        outcome = "failed"

        def explored(call: Explored) -> None:
            if token is None:
                return
            first = next(iter(call.arguments.values()), "")
            refused = " (refused)" if call.refused else ""
            message = f"exploring: {call.tool} {first}".strip()[:80] + refused
            self._client.notify(
                T.PROGRESS, T.ProgressParams(token, T.WorkDoneProgressReport(message=message))
            )

        try:
            yield explored
            outcome = "done"
        finally:
            if token is not None:
                self._client.notify(
                    T.PROGRESS, T.ProgressParams(token, T.WorkDoneProgressEnd(message=outcome))
                )
                self._client.forget_progress(token)

    async def plan(self, task: str, file: str | None) -> PlanResult:
        root = self._root()
        focus = self._focus(root, file)
        settings = await self._workspace.resolve_settings()
        self._workspace.report_problems(settings.problems)
        invalid_attempts: list[InvalidAttempt] = []

        def on_invalid(attempt: int, errors: list[str]) -> None:
            invalid_attempts.append(InvalidAttempt(attempt=attempt, errors=list(errors)))

        assert self._open is not None
        explored: list[Explored] = []
        async with self._progress("Keel: planning") as report:

            def on_explore(call: Explored) -> None:
                explored.append(call)
                report(call)

            async with self._open(root, settings.config, task, self._workspace.env) as modes:
                result = await modes.plan(task, on_invalid, focus, on_explore)
        return PlanResult(
            task=task,
            plan=result,
            invalid_attempts=invalid_attempts,
            explore=[_explore_call(call) for call in explored],
            markdown=plan_markdown(task, result),
        )

    async def explain(self, question: str, file: str | None) -> ExplainResult:
        root = self._root()
        focus = self._focus(root, file)
        settings = await self._workspace.resolve_settings()
        self._workspace.report_problems(settings.problems)
        assert self._open is not None
        async with self._progress("Keel: explaining") as report:
            async with self._open(root, settings.config, question, self._workspace.env) as modes:
                explained: Explained = await modes.explain(question, focus, report)

        def link(path: str, line: int) -> str:
            return f"{path_to_uri(root, path)}#L{line}"

        return ExplainResult(
            question=explained.question,
            answer=explained.answer,
            citations=[
                Citation(path=c.path, line=c.line, uri=path_to_uri(root, c.path))
                for c in explained.citations
            ],
            dropped=[
                DroppedCitation(path=d.path, line=d.line, reason=d.reason)
                for d in explained.dropped
            ],
            explore=[_explore_call(call) for call in explained.explored],
            markdown=explanation_markdown(explained, link),
        )


def _explore_call(call: Explored) -> ExploreCall:
    return ExploreCall(
        tool=call.tool,
        arguments=dict(call.arguments),
        chars=call.chars,
        refused=call.refused,
        reason=call.reason,
    )
