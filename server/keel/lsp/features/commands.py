"""The ``keel.server.*`` commands (``docs/reference/lsp.md``), each taking one JSON object.

Every handler receives the raw JSON arguments (``*args``), validates them into one object
(``keel.lsp.args``), calls one service and answers with that service's payload
(``keel.lsp.payloads``) as JSON. Errors are JSON-RPC errors with a message that
says what went wrong and what became of the bundle: ``InvalidParams`` for a bad request,
``RequestFailed`` for a refusal; a :class:`~keel.engine.ports.KeelError` from the engine or
an adapter becomes ``RequestFailed`` with its message. No handler blocks the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pygls.exceptions import JsonRpcException

from keel.engine.ports import KeelError
from keel.lsp.args import (
    ApproveArgs,
    BundleArgs,
    CorrectArgs,
    ExplainArgs,
    LedgerArgs,
    NoArgs,
    PlanArgs,
    RejectArgs,
    RollbackArgs,
    SessionArgs,
    StartSessionArgs,
    parse_args,
)
from keel.lsp.errors import failed
from keel.lsp.payloads import AbortResult, LedgerResult, Payload, SessionIdResult

if TYPE_CHECKING:
    from pygls.lsp.server import LanguageServer

    from keel.lsp.services import Services

log = logging.getLogger(__name__)
PREFIX = "keel.server."


def register(ls: LanguageServer, services: Services) -> None:
    def command(name: str) -> Callable[[Callable[..., Awaitable[Any]]], None]:
        full = PREFIX + name

        def wrap(body: Callable[..., Awaitable[Any]]) -> None:
            async def handler(*args: Any) -> Any:
                try:
                    result: Payload | LedgerResult = await body(full, args)
                    return result.wire()
                except JsonRpcException:
                    raise
                except KeelError as exc:
                    raise failed(f"{full}: {exc}") from None

            ls.command(full)(handler)

        return wrap

    @command("startSession")
    async def start_session(name: str, args: tuple[Any, ...]) -> Any:
        parsed = parse_args(name, StartSessionArgs, args)
        scope = services.sessions.plan_scope(parsed.scope) if parsed.scope else None
        session_id = await services.sessions.start(parsed.task, mode=parsed.mode, scope=scope)
        return SessionIdResult(session_id=session_id)

    @command("status")
    async def status(name: str, args: tuple[Any, ...]) -> Any:
        parse_args(name, NoArgs, args)
        if not services.sessions.views:
            await services.sessions.load_latest()
        return services.scoring.summary()

    @command("approve")
    async def approve(name: str, args: tuple[Any, ...]) -> Any:
        parsed = parse_args(name, ApproveArgs, args)
        return await services.approval.approve(parsed.bundle_id, parsed.files, parsed.hunks)

    @command("reject")
    async def reject(name: str, args: tuple[Any, ...]) -> Any:
        parsed = parse_args(name, RejectArgs, args)
        return await services.approval.reject(
            parsed.bundle_id, parsed.reason, "rejected", files=parsed.files, hunks=parsed.hunks
        )

    @command("correct")
    async def correct(name: str, args: tuple[Any, ...]) -> Any:
        parsed = parse_args(name, CorrectArgs, args)
        return await services.approval.reject(parsed.bundle_id, parsed.feedback, "correcting")

    @command("diff")
    async def diff(name: str, args: tuple[Any, ...]) -> Any:
        parsed = parse_args(name, BundleArgs, args)
        return services.review.diff(parsed.bundle_id)

    @command("abort")
    async def abort(name: str, args: tuple[Any, ...]) -> Any:
        parsed = parse_args(name, SessionArgs, args)
        return AbortResult(aborted=services.sessions.abort(parsed.session_id))

    @command("resume")
    async def resume(name: str, args: tuple[Any, ...]) -> Any:
        parsed = parse_args(name, SessionArgs, args)
        return SessionIdResult(session_id=await services.sessions.resume(parsed.session_id))

    @command("ledger")
    async def ledger(name: str, args: tuple[Any, ...]) -> Any:
        parsed = parse_args(name, LedgerArgs, args)
        return await services.review.ledger(parsed.limit)

    @command("rollback")
    async def rollback(name: str, args: tuple[Any, ...]) -> Any:
        parsed = parse_args(name, RollbackArgs, args)
        return await services.review.rollback(parsed.entry)

    @command("plan")
    async def plan(name: str, args: tuple[Any, ...]) -> Any:
        parsed = parse_args(name, PlanArgs, args)
        return await services.modes.plan(parsed.task, parsed.file)

    @command("explain")
    async def explain(name: str, args: tuple[Any, ...]) -> Any:
        parsed = parse_args(name, ExplainArgs, args)
        return await services.modes.explain(parsed.question, parsed.file)
