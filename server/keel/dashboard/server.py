"""The dashboard's web server (aiohttp): pages, Server-Sent Events, the login.

Why aiohttp: one maintained library gives the server, streaming responses for SSE and a test
client, with no ASGI server beside it; the ``/api/v1`` application (``keel.api``) is an aiohttp
application too and mounts here as a sub-application.

Safety beside a running agent: every page reads the stores read-only in a worker thread
(:mod:`keel.dashboard.queries`), one short transaction per request. Live updates come from
one poller per process that ``stat``s the stores a connected page watches; when a store's
files change it reads the page's data mark and, if that moved, tells the page's event stream,
and the page fetches itself again.

Auth: none on loopback by default. With ``[dashboard] password`` (or ``password_env``), every
page but ``/login`` and the static files needs the session cookie, which is HttpOnly,
SameSite=Lax, Path=/ and, off loopback, Secure. Passwords are compared in constant time,
failed logins are rate-limited per client address, and binding a non-loopback address without
a password is refused before the socket opens. On loopback without a password, requests whose
``Host`` is not a loopback name are refused, so a web page elsewhere cannot reach the
dashboard through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import re
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from keel.dashboard import charts, queries, registry, render, tabs
from keel.dashboard.queries import Reader, StoreUnavailable
from keel.dashboard.render import Markup

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
COOKIE = "keel_dashboard"
COOKIE_MAX_AGE_S = 12 * 3600
#: Failed logins allowed per client address within ``LOGIN_WINDOW_S``.
LOGIN_ATTEMPTS = 5
LOGIN_WINDOW_S = 60.0
POLL_S = 0.25
HEARTBEAT_S = 15.0
OVERVIEW_LIMIT = 50
MAX_PARAM = 200
MAX_PAGE = 1_000_000
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})

#: Reads a session's ledger entries in a workspace: a list of dicts (``sha``, ``title``,
#: ``session``, ``node``, ``bundle``, ``energy``, ``approved_by``, ``timestamp``, ``files``),
#: or None when the workspace has no repository. Injected by the CLI (adapters do not import
#: each other, and git calls go through ``keel.ledger``).
LedgerReader = Callable[[Path, str], Awaitable[list[dict[str, Any]] | None]]


class DashboardRefused(Exception):
    """The dashboard cannot start with these settings (the CLI turns it into exit status 2)."""


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 3000
    password: str | None = None
    #: Workspaces given with ``-w``; empty: every workspace in the registry.
    workspaces: Sequence[Path] = ()
    env: Mapping[str, str] | None = None

    def check(self) -> None:
        if not self.password and not is_loopback(self.host):
            raise DashboardRefused(
                f"keel dashboard will not listen on {self.host} without a password: anyone "
                "who can reach it would read every session; set [dashboard] password_env "
                "(or password) in keel.toml or ~/.config/keel/config.toml, or use --host 127.0.0.1"
            )
        if not 0 <= self.port < 65536:
            raise DashboardRefused(f"--port must be 0-65535, got {self.port}")


@dataclass(frozen=True)
class Workspace:
    key: str
    path: Path
    name: str

    def row(self) -> dict[str, Any]:
        return {"key": self.key, "path": str(self.path), "name": self.name}

    @property
    def store(self) -> Path:
        return queries.store_file(self.path)


def workspace_key(path: Path) -> str:
    return hashlib.sha256(str(path).encode()).hexdigest()[:12]


def workspaces_for(settings: Settings) -> list[Workspace]:
    """The workspaces shown: those given, else the registry's (read again on each call, so a
    workspace where a session started since appears without a restart)."""
    paths = (
        [Path(p).resolve() for p in settings.workspaces]
        if settings.workspaces
        else registry.known_workspaces(settings.env)
    )
    seen: dict[str, Workspace] = {}
    for p in paths:
        key = workspace_key(p)
        seen.setdefault(key, Workspace(key, p, p.name or str(p)))
    return list(seen.values())


# --------------------------------------------------------------------------- auth


class Auth:
    """The password, the signed session cookie and the per-address rate limit."""

    def __init__(self, password: str | None, *, secure: bool) -> None:
        self.password = password
        self.secure = secure
        self._key = secrets.token_bytes(32)  # per process: a restart signs everyone out
        self._failures: dict[str, deque[float]] = {}
        self._revoked: set[str] = set()

    @property
    def enabled(self) -> bool:
        return bool(self.password)

    def check_password(self, given: str) -> bool:
        assert self.password is not None
        return hmac.compare_digest(given.encode(), self.password.encode())

    def issue(self) -> str:
        payload = f"{int(time.time())}.{secrets.token_urlsafe(16)}"
        return f"{payload}.{self._sign(payload)}"

    def valid(self, token: str | None) -> bool:
        if not token or len(token) > 200:
            return False
        payload, _, signature = token.rpartition(".")
        if not payload or not hmac.compare_digest(signature, self._sign(payload)):
            return False
        issued, _, nonce = payload.partition(".")
        try:
            age = time.time() - int(issued)
        except ValueError:
            return False
        return 0 <= age < COOKIE_MAX_AGE_S and nonce not in self._revoked

    def revoke(self, token: str | None) -> None:
        if token and self.valid(token):
            self._revoked.add(token.rpartition(".")[0].partition(".")[2])

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()

    def locked_for(self, client: str) -> int:
        """Seconds until ``client`` may try again (0: now)."""
        window = self._window(client)
        if len(window) < LOGIN_ATTEMPTS:
            return 0
        return max(1, math.ceil(window[0] + LOGIN_WINDOW_S - time.monotonic()))

    def failed(self, client: str) -> None:
        self._window(client).append(time.monotonic())

    def _window(self, client: str) -> deque[float]:
        window = self._failures.setdefault(client, deque())
        while window and window[0] < time.monotonic() - LOGIN_WINDOW_S:
            window.popleft()
        if len(self._failures) > 10_000:  # many addresses: forget the quiet ones
            for key in [k for k, v in self._failures.items() if not v][:5000]:
                del self._failures[key]
        return window


# --------------------------------------------------------------------------- live updates


@dataclass
class _Topic:
    stores: list[Path]
    session: str | None
    #: Other files whose change counts as one (the registry, for the overview).
    watch: list[Path] = field(default_factory=list)
    #: Lists the stores again when a watched file changes (the overview's workspaces come
    #: from the registry: a workspace whose first session starts brings a new store).
    resolve: Callable[[], list[Path]] | None = None
    queues: set[asyncio.Queue[str]] = field(default_factory=set)
    stamps: list[tuple[int, int, int, int]] = field(default_factory=list)
    mark: str = ""


class Hub:
    """Watches the stores open pages look at and tells their event streams when the data
    behind them changed. One loop per process, whatever the number of pages."""

    def __init__(self, reader: Reader) -> None:
        self._reader = reader
        self._topics: dict[tuple[tuple[Path, ...], str | None, tuple[Path, ...]], _Topic] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    @contextlib.asynccontextmanager
    async def subscribe(
        self,
        stores: Sequence[Path],
        session: str | None,
        watch: Sequence[Path] = (),
        resolve: Callable[[], list[Path]] | None = None,
    ) -> AsyncIterator[asyncio.Queue[str]]:
        key = (tuple(stores), session, tuple(watch))  # the overview of one store hears more
        topic = self._topics.get(key)
        if topic is None:
            topic = self._topics[key] = _Topic(list(stores), session, list(watch), resolve)
            topic.stamps = self._stamps(topic)
            try:
                topic.mark = await asyncio.to_thread(self._mark, topic)
            except BaseException:  # the page went away meanwhile: leave no topic behind
                if not topic.queues:
                    self._topics.pop(key, None)
                raise
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        topic.queues.add(queue)
        self._ensure_running()
        try:
            yield queue
        finally:
            topic.queues.discard(queue)
            if not topic.queues:
                self._topics.pop(key, None)

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while self._topics:
            for topic in list(self._topics.values()):
                try:
                    await self._check(topic)
                except Exception:  # one bad store must not stop every page's updates
                    log.exception("dashboard: cannot check %s for changes", topic.stores)
            await asyncio.sleep(POLL_S)

    async def _check(self, topic: _Topic) -> None:
        stamps = self._stamps(topic)
        if stamps == topic.stamps:
            return
        watched = len(topic.watch)
        if topic.resolve is not None and watched and stamps[-watched:] != topic.stamps[-watched:]:
            topic.stores = await asyncio.to_thread(topic.resolve)
            stamps = self._stamps(topic)
        topic.stamps = stamps
        mark = await asyncio.to_thread(self._mark, topic)
        if mark != topic.mark:
            topic.mark = mark
            for queue in list(topic.queues):
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(mark)

    @staticmethod
    def _stamps(topic: _Topic) -> list[tuple[int, int, int, int]]:
        return [queries.change_stamp(p) for p in (*topic.stores, *topic.watch)]

    def _mark(self, topic: _Topic) -> str:
        marks: list[object] = [self._stamps(topic)[len(topic.stores) :]]
        for store in topic.stores:
            try:
                with queries.reading(store) as conn:
                    marks.append(queries.data_mark(conn, topic.session))
            except StoreUnavailable as err:
                marks.append(err.kind)
        return json.dumps(marks)


# --------------------------------------------------------------------------- the app


class BadRequest(Exception):
    """A query parameter or path part the dashboard cannot use; shown as a 400 page."""


@dataclass
class Dashboard:
    settings: Settings
    auth: Auth
    hub: Hub
    reader: Reader
    ledger: LedgerReader | None

    # ----------------------------------------------------------------- helpers

    async def workspaces(self) -> list[Workspace]:
        """The workspaces shown; the registry is read (under its lock) off the event loop."""
        return await asyncio.to_thread(workspaces_for, self.settings)

    async def workspace(self, key: str) -> Workspace:
        for w in await self.workspaces():
            if w.key == key:
                return w
        raise web.HTTPNotFound(
            text=render.message_page(
                "Unknown workspace",
                "No workspace with this key is shown by this dashboard.",
                detail="It may be gone, or the dashboard was started with other -w folders.",
            ),
            content_type="text/html",
        )

    async def read(self, store: Path, work: Callable[[Any], Any]) -> Any:
        def run() -> Any:
            with queries.reading(store) as conn:
                return work(conn)

        return await asyncio.to_thread(run)

    def signed_in(self) -> bool:
        return self.auth.enabled

    # ----------------------------------------------------------------- pages

    async def overview(self, request: web.Request) -> web.Response:
        workspace = _param(request, "workspace")
        status = _param(request, "status")
        if status and status not in queries.STATUSES:
            raise BadRequest(
                f"unknown status {render.cut(status, 40)!r}; one of {', '.join(queries.STATUSES)}"
            )
        every = await self.workspaces()
        shown = every
        if workspace:
            shown = [w for w in every if w.key == workspace]
            if not shown:
                raise BadRequest("unknown workspace in the filter")
        results = await asyncio.gather(
            *(self._sessions_of(w, status) for w in shown), return_exceptions=False
        )
        sessions: list[dict[str, Any]] = []
        problems: list[str] = []
        for found, problem in results:
            sessions += found
            if problem:
                problems.append(problem)
        sessions.sort(key=lambda s: str(s["started_at"]), reverse=True)
        page = render.overview(
            sessions[:OVERVIEW_LIMIT],
            [w.row() for w in every],
            workspace=workspace,
            status=status,
            statuses=queries.STATUSES,
            problems=problems,
            signed_in=self.signed_in(),
            stream="/events" + (f"?workspace={workspace}" if workspace else ""),
        )
        return _html(page)

    async def _sessions_of(
        self, w: Workspace, status: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        try:
            rows = await self.read(
                w.store,
                lambda conn: queries.session_list(
                    conn, self.reader, limit=OVERVIEW_LIMIT, status=status
                ),
            )
        except StoreUnavailable as err:
            if err.kind == "missing" and not self.settings.workspaces:
                return [], None  # registered, its store not made yet (or deleted): no sessions
            return [], f"{w.name}: {err}"
        for r in rows:
            r |= {"workspace_key": w.key, "workspace": str(w.path), "workspace_name": w.name}
        return rows, None

    async def session_redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/w/{request.match_info['ws']}/s/{request.match_info['sid']}/dag")

    async def session_tab(self, request: web.Request) -> web.Response:
        w, sid, tab = await self._target(request)
        base = f"/w/{w.key}/s/{sid}"
        reader = self.reader
        page_no = _int_param(request, "page", 1)
        tier, node = _param(request, "tier"), _param(request, "node")

        def load(conn: Any) -> tuple[dict[str, Any] | None, Any]:
            summary = queries.session(conn, reader, sid)
            if summary is None:
                return None, None
            if tab == "dag":
                return summary, queries.plan_graph(conn, reader, sid)
            if tab == "energy":
                return summary, queries.energy(conn, reader, sid)
            if tab == "calls":
                totals = queries.call_totals(conn, sid)
                filtered = tier or node
                total = (
                    queries.call_count(conn, sid, tier, node) if filtered else totals["requests"]
                )
                # a page past the end (an old link, a typed number) shows the last one
                page = min(page_no, max(1, math.ceil(total / queries.CALLS_PER_PAGE)))
                return summary, (
                    totals,
                    queries.calls_page(conn, reader, sid, page=page, tier=tier, node=node),
                    total,
                )
            if tab == "sandboxes":
                return summary, queries.sandboxes(conn, reader, sid, w.path)
            if tab == "decisions":
                return summary, queries.decisions(conn, reader, sid)
            return summary, None

        summary, data = await self._load(w, load)
        if summary is None:
            raise _unknown_session(sid, w)
        if tab == "dag":
            content = charts.dag(data, base=base)
        elif tab == "energy":
            content = tabs.energy(data, summary.get("epsilon"), base=base)
        elif tab == "calls":
            totals, rows, total = data
            pages = max(1, math.ceil(total / queries.CALLS_PER_PAGE))
            content = tabs.calls(
                totals, rows, page=min(page_no, pages), pages=pages, base=base, tier=tier, node=node
            )
        elif tab == "sandboxes":
            content = tabs.sandboxes(data, base=base)
        elif tab == "decisions":
            content = tabs.decisions(data, base=base)
        else:
            content = await self._ledger(w, sid)
        return _html(
            render.session_page(
                tab,
                summary,
                content,
                base=base,
                workspace=w.row(),
                signed_in=self.signed_in(),
                stream=f"/events?workspace={w.key}&session={sid}",
            )
        )

    async def _ledger(self, w: Workspace, sid: str) -> Markup:
        if self.ledger is None:
            return tabs.ledger(None, workspace=str(w.path), problem="No ledger reader configured.")
        try:
            entries = await self.ledger(w.path, sid)
        except Exception as err:  # git trouble is the page's message, not a crash
            log.warning("cannot read the ledger of %s: %s", w.path, err)
            return tabs.ledger(
                None, workspace=str(w.path), problem=f"Cannot read the ledger: {err}"
            )
        return tabs.ledger(entries, workspace=str(w.path))

    async def node_page(self, request: web.Request) -> web.Response:
        w, sid, _ = await self._target(request)
        nid = request.match_info["node"]
        base = f"/w/{w.key}/s/{sid}"
        reader = self.reader

        def load(conn: Any) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
            summary = queries.session(conn, reader, sid)
            if summary is None or len(nid) > MAX_PARAM:
                return summary, None
            return summary, queries.node_detail(conn, reader, sid, nid)

        summary, detail = await self._load(w, load)
        if summary is None:
            raise _unknown_session(sid, w)
        if detail is None:
            raise web.HTTPNotFound(
                text=render.message_page(
                    "Unknown node",
                    f"Session {sid} has no node {render.cut(nid, 80)!r}.",
                ),
                content_type="text/html",
            )
        return _html(
            render.session_page(
                "dag",
                summary,
                tabs.node_detail(detail, base=base),
                base=base,
                workspace=w.row(),
                signed_in=self.signed_in(),
                stream=f"/events?workspace={w.key}&session={sid}",
                title=f"{sid} {nid}",
            )
        )

    async def _target(self, request: web.Request) -> tuple[Workspace, str, str]:
        w = await self.workspace(request.match_info["ws"])
        sid = request.match_info["sid"]
        if not _ID.match(sid):
            raise _unknown_session(sid, w)
        return w, sid, request.match_info.get("tab", "dag")

    async def _load(self, w: Workspace, load: Callable[[Any], Any]) -> Any:
        try:
            return await self.read(w.store, load)
        except StoreUnavailable as err:
            raise _store_error(404 if err.kind == "missing" else 503, str(err)) from err

    # ----------------------------------------------------------------- events

    async def events(self, request: web.Request) -> web.StreamResponse:
        key = _param(request, "workspace")
        session = _param(request, "session")
        every = await self.workspaces()
        chosen = [w for w in every if w.key == key] if key else every
        if key and not chosen:
            raise web.HTTPNotFound(text="unknown workspace")
        if session is not None and (not _ID.match(session) or not key):
            raise web.HTTPBadRequest(text="a session needs its workspace")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        await response.write(b"retry: 1000\n\n")
        # the overview also hears the registry: a workspace whose first session starts appears
        by_registry = not key and not self.settings.workspaces
        watch = [registry.registry_path(self.settings.env)] if by_registry else []

        def stores() -> list[Path]:
            return [w.store for w in workspaces_for(self.settings)]  # runs in a thread

        try:
            async with self.hub.subscribe(
                [w.store for w in chosen], session, watch, stores if by_registry else None
            ) as queue:
                await response.write(b"event: ready\ndata: {}\n\n")
                while True:
                    try:
                        mark = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                    except TimeoutError:
                        await response.write(b": keep-alive\n\n")
                        continue
                    data = json.dumps({"at": time.time(), "mark": mark})
                    await response.write(f"event: change\ndata: {data}\n\n".encode())
        except (ConnectionResetError, ConnectionError):
            pass  # the page went away
        return response

    # ----------------------------------------------------------------- login

    async def login_form(self, request: web.Request) -> web.Response:
        if not self.auth.enabled:
            raise web.HTTPFound("/")
        return _html(render.login_page(next_url=_safe_next(_param(request, "next"))))

    async def login(self, request: web.Request) -> web.Response:
        if not self.auth.enabled:
            raise web.HTTPFound("/")
        client = request.remote or "?"
        form = await request.post()
        next_url = _safe_next(str(form.get("next") or "/")[: MAX_PARAM * 4])
        wait = self.auth.locked_for(client)
        if wait:
            page = render.login_page(
                error=f"Too many failed attempts; try again in {wait} s.",
                next_url=next_url,
                locked_for=wait,
            )
            return _html(page, status=429, headers={"Retry-After": str(wait)})
        given = form.get("password")
        if not isinstance(given, str) or not self.auth.check_password(given[:4096]):
            self.auth.failed(client)
            log.warning("dashboard: failed login from %s", client)
            return _html(render.login_page(error="Wrong password.", next_url=next_url), status=401)
        response = web.HTTPSeeOther(next_url)
        response.set_cookie(
            COOKIE,
            self.auth.issue(),
            max_age=COOKIE_MAX_AGE_S,
            path="/",
            httponly=True,
            samesite="Lax",
            secure=self.auth.secure,
        )
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        self.auth.revoke(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther("/login" if self.auth.enabled else "/")
        response.del_cookie(COOKIE, path="/")
        raise response


def _param(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    if len(value) > MAX_PARAM:
        raise BadRequest(f"the parameter {name!r} is too long ({len(value)} characters)")
    return value


def _int_param(request: web.Request, name: str, default: int) -> int:
    value = _param(request, name)
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise BadRequest(f"{name} must be a whole number from 1 to {MAX_PAGE}")
    return int(value)


def _safe_next(value: str | None) -> str:
    """Only a path on this site (``/...``, not ``//host`` or a scheme, no control
    characters): no open redirect, no header injection."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return "/"
    return value


def _html(
    page: str, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        text=page, status=status, content_type="text/html", charset="utf-8", headers=headers
    )


def _store_error(status: int, text: str) -> web.HTTPException:
    cls = web.HTTPNotFound if status == 404 else web.HTTPServiceUnavailable
    return cls(
        text=render.message_page("Session store unavailable", text),
        content_type="text/html",
    )


def _unknown_session(sid: str, w: Workspace) -> web.HTTPException:
    return web.HTTPNotFound(
        text=render.message_page(
            "Unknown session",
            f"The workspace {w.path} has no session {render.cut(sid, 80)!r}.",
            detail="`keel sessions -w DIR` lists the sessions a workspace has.",
        ),
        content_type="text/html",
    )


# --------------------------------------------------------------------------- middlewares


def _middlewares(dash: Dashboard) -> list[Any]:
    open_paths = ("/login", "/static/", "/api/v1/", "/api/v1")

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if not dash.auth.enabled and not _host_ok(request, dash.settings.host):
            return web.Response(status=421, text="keel dashboard: unexpected Host header\n")
        path = request.path
        if dash.auth.enabled and not path.startswith(open_paths):
            if not dash.auth.valid(request.cookies.get(COOKIE)):
                if path == "/events" or request.method != "GET":
                    return web.Response(status=401, text="sign in first\n")
                target = request.path_qs if len(request.path_qs) < 1000 else "/"
                raise web.HTTPFound("/login?" + _urlencode({"next": target}))
        try:
            response: web.StreamResponse = await handler(request)
        except BadRequest as err:
            return _html(render.message_page("Bad request", str(err)), status=400)
        if isinstance(response, web.Response) and not path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "same-origin")
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
                " frame-ancestors 'none'",
            )
        return response

    return [guard]


def _urlencode(values: Mapping[str, str]) -> str:
    from urllib.parse import urlencode

    return urlencode(values)


def _host_ok(request: web.Request, bound: str) -> bool:
    """On a loopback bind, the Host header must name loopback (DNS rebinding guard)."""
    if not is_loopback(bound):
        return True
    host = request.host or ""
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return name.lower() in _LOOPBACK_NAMES or is_loopback(name) or name == bound


# --------------------------------------------------------------------------- factory


DASHBOARD: web.AppKey[Dashboard] = web.AppKey("dashboard", Dashboard)


class _QuietRefusedRequests(logging.Filter):
    """A request the HTTP parser refuses (a request line over 8 KB, a malformed header) is
    the client's mistake, already answered with a 400: no traceback on the terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, HttpProcessingError) and 400 <= (error.code or 0) < 500)


_QUIET = _QuietRefusedRequests()


def create_app(
    settings: Settings,
    *,
    ledger: LedgerReader | None = None,
    api: web.Application | None = None,
) -> web.Application:
    """The dashboard application; ``api`` (``keel.api``) is mounted at ``/api/v1``, outside
    the cookie login (it checks its own bearer token)."""
    settings.check()
    server_log = logging.getLogger("aiohttp.server")
    if _QUIET not in server_log.filters:
        server_log.addFilter(_QUIET)
    reader = Reader.for_environment(settings.env)
    dash = Dashboard(
        settings=settings,
        auth=Auth(settings.password, secure=not is_loopback(settings.host)),
        hub=Hub(reader),
        reader=reader,
        ledger=ledger,
    )
    app = web.Application(middlewares=_middlewares(dash), client_max_size=64 * 1024)
    app[DASHBOARD] = dash
    tabs = "{tab:dag|energy|calls|sandboxes|decisions|ledger}"
    app.add_routes(
        [
            web.get("/", dash.overview),
            web.get("/login", dash.login_form),
            web.post("/login", dash.login),
            web.post("/logout", dash.logout),
            web.get("/events", dash.events),
            web.get("/w/{ws}/s/{sid}", dash.session_redirect),
            web.get("/w/{ws}/s/{sid}/" + tabs, dash.session_tab),
            web.get("/w/{ws}/s/{sid}/node/{node}", dash.node_page),
            web.static("/static", STATIC, append_version=False),
        ]
    )
    if api is not None:
        app.add_subapp("/api/v1", api)

    async def close_hub(_: web.Application) -> None:
        await dash.hub.close()

    app.on_shutdown.append(close_hub)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app


async def _not_found(request: web.Request) -> web.Response:
    return _html(
        render.message_page("Not found", f"Nothing here: {render.cut(request.path, 120)}"),
        status=404,
    )


async def serve(app: web.Application, host: str, port: int, ready: Callable[[str], None]) -> None:
    """Serve until cancelled; ``ready`` gets the URL once the socket listens."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []  # the bound port (for --port 0)
        bound = sockets[0].getsockname()[1] if sockets else port
        shown = f"[{host}]" if ":" in host else host
        ready(f"http://{shown}:{bound}/")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
