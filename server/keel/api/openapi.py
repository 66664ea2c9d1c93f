"""The OpenAPI 3.1 document served at ``/api/v1/openapi.json``.

The request schemas come from the pydantic models the server validates with
(``keel.api.bodies``), so they cannot drift from what is accepted; a test checks that every
route of the application is described here and nothing else.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from .bodies import (
    ApproveBody,
    ContinueBody,
    CorrectBody,
    EmptyBody,
    RejectBody,
    ResumeBody,
    StartBody,
)

BODIES: dict[str, type[BaseModel]] = {
    "StartBody": StartBody,
    "ContinueBody": ContinueBody,
    "ResumeBody": ResumeBody,
    "ApproveBody": ApproveBody,
    "RejectBody": RejectBody,
    "CorrectBody": CorrectBody,
    "EmptyBody": EmptyBody,
}

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
_ID = {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}
_OBJECT = {"type": "object"}
_SESSION_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/Error"}
    texts = {
        400: "bad input (malformed JSON, unknown or invalid fields, bad configuration)",
        401: "no or wrong bearer token",
        403: "the workspace is outside the allowed roots",
        404: "no such session or bundle",
        409: "a conflict: a session already runs in the workspace, or the session's state "
        "does not allow this",
        413: "the body is larger than 64 KiB",
        422: "the session could not start (no sandbox, git state)",
    }
    return {str(s): _json(ref, texts[s]) for s in (401, *statuses)}


def _op(
    summary: str,
    ok: tuple[int, dict[str, Any]],
    *errors: int,
    body: str | None = None,
    params: list[dict[str, Any]] | None = None,
    body_required: bool = True,
) -> dict[str, Any]:
    status, response = ok
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {str(status): response, **_errors(*errors)},
    }
    if body is not None:
        op["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        }
    if params:
        op["parameters"] = params
    return op


def document() -> dict[str, Any]:
    """The whole document (JSON-ready)."""
    schemas: dict[str, Any] = {"Error": _ERROR}
    for name, model in BODIES.items():
        schemas[name] = model.model_json_schema(by_alias=True)
    events = {
        "description": "Server-Sent Events: `id` is the store's event id, `event` the type, "
        "`data` the event exactly as `keel agent --json` prints it. Send `Last-Event-ID` to "
        "resume after a disconnect. The stream ends after `session_finished`.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
    after = {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
    }
    workspace_q = {"name": "workspace", "in": "query", "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Keel execution API",
            "version": "1",
            "description": "Start, stream, decide and continue Keel sessions over HTTP "
            "(docs/reference/api.md).",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
        "paths": {
            "/openapi.json": {"get": _op("This document", (200, _json(_OBJECT, "OpenAPI")))},
            "/sessions": {
                "post": _op(
                    "Start a session",
                    (201, _json(_ID, "started (stored, its first event written)")),
                    400,
                    403,
                    409,
                    413,
                    422,
                    body="StartBody",
                ),
                "get": _op(
                    "List sessions (of one workspace with ?workspace=)",
                    (200, _json(_OBJECT, "{sessions: [...]}")),
                    400,
                    403,
                    params=[workspace_q],
                ),
            },
            "/sessions/{id}": {
                "get": _op(
                    "A session's summary (as `keel status --json`, with state and pending)",
                    (200, _json(_OBJECT, "the summary")),
                    404,
                    params=[_SESSION_ID],
                )
            },
            "/sessions/{id}/events": {
                "get": _op(
                    "The session's events", (200, events), 400, 404, params=[_SESSION_ID, after]
                )
            },
            "/sessions/{id}/approve": {
                "post": _op(
                    "Approve a pending bundle; answers once it is committed",
                    (200, _json(_OBJECT, "{bundle, decision, ledgerEntry, committed}")),
                    400,
                    404,
                    409,
                    413,
                    body="ApproveBody",
                    params=[_SESSION_ID],
                )
            },
            "/sessions/{id}/reject": {
                "post": _op(
                    "Reject a pending bundle (feedback reaches the model)",
                    (200, _json(_OBJECT, "{bundle, decision}")),
                    400,
                    404,
                    409,
                    413,
                    body="RejectBody",
                    params=[_SESSION_ID],
                )
            },
            "/sessions/{id}/correct": {
                "post": _op(
                    "Correct a pending bundle: a rejection with required instructions",
                    (200, _json(_OBJECT, "{bundle, decision}")),
                    400,
                    404,
                    409,
                    413,
                    body="CorrectBody",
                    params=[_SESSION_ID],
                )
            },
            "/sessions/{id}/abort": {
                "post": _op(
                    "Abort a running session (it ends `aborted`; resume continues it)",
                    (200, _json(_OBJECT, "{id, outcome} or {id, signalled}")),
                    400,
                    404,
                    409,
                    body="EmptyBody",
                    params=[_SESSION_ID],
                    body_required=False,
                )
            },
            "/sessions/{id}/resume": {
                "post": _op(
                    "Resume a stopped session where it stopped",
                    (202, _json(_ID, "running again")),
                    400,
                    404,
                    409,
                    413,
                    422,
                    body="ResumeBody",
                    params=[_SESSION_ID],
                )
            },
            "/sessions/{id}/continue": {
                "post": _op(
                    "Follow up a finished session with a new task",
                    (201, _json(_ID, "the new session (`continues` names the previous)")),
                    400,
                    404,
                    409,
                    413,
                    422,
                    body="ContinueBody",
                    params=[_SESSION_ID],
                )
            },
            "/sessions/{id}/bundles/{bundle}/diff": {
                "get": _op(
                    "A pending or committed bundle's diff; with `Accept: application/json`, a "
                    "pending bundle's files and hunks (the ids approve and reject take)",
                    (
                        200,
                        {
                            "description": "unified diff, or {bundle, files: [{path, change, "
                            "unifiedDiff, hunks: [{id, oldStart, oldLines, newStart, newLines, "
                            "header, removed, added}]}]}",
                            "content": {"text/x-diff": {}, "application/json": {"schema": _OBJECT}},
                        },
                    ),
                    404,
                    params=[
                        _SESSION_ID,
                        {
                            "name": "bundle",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                    ],
                )
            },
            "/ledger": {
                "get": _op(
                    "A workspace's ledger entries, newest first",
                    (200, _json(_OBJECT, "{entries: [...]}")),
                    400,
                    403,
                    params=[
                        {**workspace_q, "required": True},
                        {"name": "recent", "in": "query", "schema": {"type": "integer"}},
                    ],
                )
            },
        },
    }
