"""The ``/api/v1`` aiohttp sub-application: routes, the bearer token, errors as JSON.

Every answer other than success is ``{"error": {"code", "message"}}`` with a 4xx (or 5xx)
status, and a refused request changes nothing. The token is compared in constant time
(``hmac.compare_digest``) and is required on every call, including ``openapi.json``.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from keel.config import user_config
from keel.engine.ports import ConfigError, Decision, KeelError

from .bodies import (
    ApproveBody,
    ContinueBody,
    CorrectBody,
    EmptyBody,
    RejectBody,
    ResumeBody,
    StartBody,
)
from .openapi import document
from .sessions import ApiError, SessionManager

log = logging.getLogger(__name__)

#: The largest request body accepted (bytes).
MAX_BODY = 64 * 1024
#: The shortest token the API accepts: a guessable token is no protection.
MIN_TOKEN = 16
#: Seconds between keep-alive comments on an idle event stream.
KEEPALIVE_S = 15.0

MANAGER = web.AppKey("manager", SessionManager)
TOKEN = web.AppKey("token", bytes)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Body = TypeVar("Body", bound=BaseModel)


def api_token(env: Mapping[str, str]) -> str | None:
    """The API token: the value of the variable ``[dashboard] api_token_env`` names (from the
    user's configuration and ``KEEL_*``, never a workspace's), or ``None`` when unset."""
    name = user_config(env).dashboard.api_token_env
    return env.get(name) or None


def build_api_app(
    roots: Sequence[Path],
    *,
    token: str,
    env: Mapping[str, str],
    poll_s: float = 0.02,
) -> web.Application:
    """The ``/api/v1`` sub-application. Mount it with ``app.add_subapp("/api/v1", api)``.

    ``roots``: the directories under which workspaces may be (``-w``). ``token``: the bearer
    token every request must carry. ``env``: the sessions' environment (the token's own
    variable is removed from it, so no session sees it). ``poll_s``: how often a stream
    watching a session another process runs reads the store.
    """
    if len(token) < MIN_TOKEN:
        raise ValueError(f"the API token must be at least {MIN_TOKEN} characters")
    secret_env = {k: v for k, v in env.items() if v != token}
    app = web.Application(middlewares=[_errors, _auth])
    app[TOKEN] = token.encode()
    app[MANAGER] = SessionManager(roots, secret_env, poll_s=poll_s)

    async def shutdown(app: web.Application) -> None:
        await app[MANAGER].shutdown()

    async def close(app: web.Application) -> None:
        await app[MANAGER].close()

    app.on_shutdown.append(shutdown)
    app.on_cleanup.append(close)
    app.router.add_get("/openapi.json", _openapi)
    app.router.add_post("/sessions", _start)
    app.router.add_get("/sessions", _list)
    app.router.add_get("/sessions/{id}", _session)
    app.router.add_get("/sessions/{id}/events", _events)
    app.router.add_post("/sessions/{id}/approve", _approve)
    app.router.add_post("/sessions/{id}/reject", _reject)
    app.router.add_post("/sessions/{id}/correct", _correct)
    app.router.add_post("/sessions/{id}/abort", _abort)
    app.router.add_post("/sessions/{id}/resume", _resume)
    app.router.add_post("/sessions/{id}/continue", _continue)
    app.router.add_get("/sessions/{id}/bundles/{bundle}/diff", _diff)
    app.router.add_get("/ledger", _ledger)
    return app


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
    except ConfigError as exc:
        return error(400, "bad_config", str(exc))
    except KeelError as exc:  # an unreadable store, a failing git: said as Keel says it
        return error(500, "keel_error", str(exc))


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    expected = request.app[TOKEN]
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        response = error(
            401,
            "unauthorized",
            "a valid API token is required: Authorization: Bearer <token>"
            if header
            else "missing Authorization: Bearer <token>",
        )
        response.headers["WWW-Authenticate"] = 'Bearer realm="keel"'
        return response
    return await handler(request)


async def body(request: web.Request, model: type[Body]) -> Body:
    """The request's JSON body validated by ``model``: 413 when too large, 400 otherwise."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, "too_large", f"the body is larger than {MAX_BODY} bytes")
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ApiError(413, "too_large", f"the body is larger than {MAX_BODY} bytes")
    if not raw.strip():
        raw = b"{}"
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_json", f"the body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ApiError(400, "bad_request", problems) from exc


def _manager(request: web.Request) -> SessionManager:
    return request.app[MANAGER]


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(document())


async def _start(request: web.Request) -> web.Response:
    given = await body(request, StartBody)
    session_id = await _manager(request).start(given.task, given.workspace, given.flags())
    return web.json_response({"id": session_id}, status=201)


async def _list(request: web.Request) -> web.Response:
    workspace = request.query.get("workspace")
    return web.json_response({"sessions": await _manager(request).listing(workspace)})


async def _session(request: web.Request) -> web.Response:
    return web.json_response(await _manager(request).summary(request.match_info["id"]))


async def _approve(request: web.Request) -> web.Response:
    given = await body(request, ApproveBody)
    decision = Decision(
        approved=True, actor="api", feedback=given.feedback, files=given.files, hunks=given.hunks
    )
    manager = _manager(request)
    return web.json_response(
        await manager.decide(request.match_info["id"], given.bundle, decision, wait=True)
    )


async def _reject(request: web.Request) -> web.Response:
    given = await body(request, RejectBody)
    decision = Decision(approved=False, actor="api", feedback=given.feedback, hunks=given.hunks)
    manager = _manager(request)
    return web.json_response(
        await manager.decide(request.match_info["id"], given.bundle, decision, wait=False)
    )


async def _correct(request: web.Request) -> web.Response:
    given = await body(request, CorrectBody)
    decision = Decision(approved=False, actor="api", feedback=given.feedback, correction=True)
    manager = _manager(request)
    answer = await manager.decide(request.match_info["id"], given.bundle, decision, wait=False)
    return web.json_response({**answer, "decision": "corrected"})


async def _abort(request: web.Request) -> web.Response:
    await body(request, EmptyBody)
    return web.json_response(await _manager(request).abort(request.match_info["id"]))


async def _resume(request: web.Request) -> web.Response:
    given = await body(request, ResumeBody)
    flags = {"mode": given.mode, "max_cost": given.max_cost, "max_steps": given.max_steps}
    session_id = await _manager(request).resume(request.match_info["id"], flags)
    return web.json_response({"id": session_id}, status=202)


async def _continue(request: web.Request) -> web.Response:
    given = await body(request, ContinueBody)
    manager = _manager(request)
    previous = request.match_info["id"]
    session_id = await manager.follow_up(previous, given.task, given.flags())
    return web.json_response({"id": session_id, "continues": previous}, status=201)


async def _diff(request: web.Request) -> web.Response:
    manager = _manager(request)
    session_id, bundle = request.match_info["id"], request.match_info["bundle"]
    if _wants_json(request):
        return web.json_response(await manager.diff_files(session_id, bundle))
    patch = await manager.diff(session_id, bundle)
    return web.Response(text=patch, content_type="text/x-diff")


def _wants_json(request: web.Request) -> bool:
    """``Accept: application/json`` asks for the files and hunks rather than the patch."""
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/x-diff" not in accept


async def _ledger(request: web.Request) -> web.Response:
    workspace = request.query.get("workspace")
    if not workspace:
        raise ApiError(400, "bad_request", "the workspace query parameter is required")
    recent_text = request.query.get("recent")
    recent: int | None = None
    if recent_text is not None:
        if not recent_text.isdigit() or int(recent_text) < 1:
            raise ApiError(400, "bad_request", f"recent must be a positive integer: {recent_text}")
        recent = int(recent_text)
    entries = await _manager(request).ledger(workspace, recent)
    return web.json_response({"entries": entries})


def _last_event_id(request: web.Request) -> int:
    raw = request.headers.get("Last-Event-ID") or request.query.get("after") or "0"
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(400, "bad_request", f"Last-Event-ID must be an event id: {raw[:40]}")
    return int(raw)


async def _events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: ``id: <events row id>``, ``event: <type>``, ``data: <--json line>``.
    The stream ends after ``session_finished`` (or when nobody runs the session)."""
    after = _last_event_id(request)
    feed = await _manager(request).feed(request.match_info["id"])
    feed.attach()  # before any await: an unwatched finished feed may be forgotten
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    try:
        await response.prepare(request)
        index = feed.start_index(after)
        while True:
            batch = await feed.next_batch(index, KEEPALIVE_S)
            if batch is None:
                break
            if not batch:
                await response.write(b": keep-alive\n\n")
                continue
            chunk = "".join(f"id: {e.id}\nevent: {e.type}\ndata: {e.data}\n\n" for e in batch)
            await response.write(chunk.encode())
            index += len(batch)
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        feed.detach()
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    return response
