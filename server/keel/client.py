"""A small typed Python client of the execution API (``/api/v1``), on the standard library.

    from keel.client import KeelClient

    client = KeelClient("http://127.0.0.1:8765/api/v1", token)
    session = client.start("Add a --verbose flag", workspace="/srv/repos/tool", mode="cautious")
    for event in client.events(session):
        if event.type == "awaiting_approval":
            client.approve(session, event.data["bundle"])

Every call raises :class:`ApiError` (with the HTTP status, the error code and the server's
message) when the server refuses. :meth:`KeelClient.events` yields :class:`Event` objects
until the session's stream ends; pass ``last_event_id`` to resume after a dropped
connection. Blocking calls: run them in a thread from async code.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any


class ApiError(Exception):
    """The server refused: ``status`` (HTTP), ``code`` and ``message`` (its words)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event: the store's event ``id``, its ``type`` and the event itself."""

    id: int
    type: str
    data: dict[str, Any]


class KeelClient:
    """The API at ``base_url`` (ending in ``/api/v1``) with a bearer ``token``."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 120.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout

    # -------------------------------------------------------------- sessions

    def start(
        self,
        task: str,
        *,
        workspace: str,
        model: str | None = None,
        mode: str | None = None,
        max_cost: float | None = None,
        max_steps: int | None = None,
    ) -> str:
        """Start a session; its id once it is stored and started."""
        body = {"task": task, "workspace": workspace}
        body.update(_options(model, mode, max_cost, max_steps))
        return str(self._call("POST", "/sessions", body)["id"])

    def sessions(self, workspace: str | None = None) -> list[dict[str, Any]]:
        query = {"workspace": workspace} if workspace else None
        return list(self._call("GET", "/sessions", query=query)["sessions"])

    def session(self, session_id: str) -> dict[str, Any]:
        """The summary ``keel status --json`` prints, with ``state`` and ``pending``."""
        return dict(self._call("GET", f"/sessions/{_quote(session_id)}"))

    def approve(
        self,
        session_id: str,
        bundle: str,
        *,
        files: Sequence[str] | None = None,
        feedback: str = "",
        hunks: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Approve a pending bundle (or only ``files`` or ``hunks`` of it); answers once
        committed."""
        body: dict[str, Any] = {"bundle": bundle, "feedback": feedback}
        if files is not None:
            body["files"] = list(files)
        if hunks is not None:
            body["hunks"] = list(hunks)
        return dict(self._call("POST", f"/sessions/{_quote(session_id)}/approve", body))

    def reject(
        self,
        session_id: str,
        bundle: str,
        feedback: str = "",
        *,
        hunks: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Reject a pending bundle (or only ``hunks`` of it: the rest is verified again)."""
        body: dict[str, Any] = {"bundle": bundle, "feedback": feedback}
        if hunks is not None:
            body["hunks"] = list(hunks)
        return dict(self._call("POST", f"/sessions/{_quote(session_id)}/reject", body))

    def correct(self, session_id: str, bundle: str, feedback: str) -> dict[str, Any]:
        body = {"bundle": bundle, "feedback": feedback}
        return dict(self._call("POST", f"/sessions/{_quote(session_id)}/correct", body))

    def abort(self, session_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/sessions/{_quote(session_id)}/abort", {}))

    def resume(
        self,
        session_id: str,
        *,
        mode: str | None = None,
        max_cost: float | None = None,
        max_steps: int | None = None,
    ) -> str:
        body = _options(None, mode, max_cost, max_steps)
        return str(self._call("POST", f"/sessions/{_quote(session_id)}/resume", body)["id"])

    def continue_session(
        self,
        session_id: str,
        task: str,
        *,
        model: str | None = None,
        mode: str | None = None,
        max_cost: float | None = None,
        max_steps: int | None = None,
    ) -> str:
        """Follow up a finished session with ``task``; the new session's id."""
        body: dict[str, Any] = {"task": task, **_options(model, mode, max_cost, max_steps)}
        return str(self._call("POST", f"/sessions/{_quote(session_id)}/continue", body)["id"])

    def diff(self, session_id: str, bundle: str) -> str:
        path = f"/sessions/{_quote(session_id)}/bundles/{_quote(bundle)}/diff"
        with self._open("GET", path) as response:
            return str(response.read().decode())

    def diff_files(self, session_id: str, bundle: str) -> dict[str, Any]:
        """A pending bundle's files with their hunks (``{bundle, files}``)."""
        path = f"/sessions/{_quote(session_id)}/bundles/{_quote(bundle)}/diff"
        with self._open("GET", path, headers={"Accept": "application/json"}) as response:
            return dict(json.loads(response.read()))

    def ledger(self, workspace: str, recent: int | None = None) -> list[dict[str, Any]]:
        query: dict[str, str] = {"workspace": workspace}
        if recent is not None:
            query["recent"] = str(recent)
        return list(self._call("GET", "/ledger", query=query)["entries"])

    def openapi(self) -> dict[str, Any]:
        return dict(self._call("GET", "/openapi.json"))

    def events(self, session_id: str, *, last_event_id: int | None = None) -> Iterator[Event]:
        """The session's events, from after ``last_event_id`` (default: the first), until
        the stream ends. Closing the iterator closes the connection."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        path = f"/sessions/{_quote(session_id)}/events"
        with self._open("GET", path, headers=headers) as response:
            fields: dict[str, str] = {}
            for raw in response:
                line = raw.decode().rstrip("\r\n")
                if line:
                    if not line.startswith(":"):
                        name, _, value = line.partition(":")
                        fields[name] = value[1:] if value.startswith(" ") else value
                    continue
                if "data" in fields:
                    yield Event(
                        int(fields["id"]), fields.get("event", ""), json.loads(fields["data"])
                    )
                fields = {}

    # -------------------------------------------------------------- plumbing

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        query: dict[str, str] | None = None,
    ) -> Any:
        with self._open(method, path, body, query=query) as response:
            return json.loads(response.read())

    def _open(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from None


def _options(
    model: str | None, mode: str | None, max_cost: float | None, max_steps: int | None
) -> dict[str, Any]:
    given = {"model": model, "mode": mode, "maxCost": max_cost, "maxSteps": max_steps}
    return {key: value for key, value in given.items() if value is not None}


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _api_error(exc: urllib.error.HTTPError) -> ApiError:
    raw = exc.read()
    try:
        error = json.loads(raw)["error"]
        return ApiError(exc.code, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        return ApiError(exc.code, "http_error", raw.decode(errors="replace")[:500])
