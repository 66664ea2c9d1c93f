"""``keel dashboard`` over HTTP against a store written by a real session (the small session
of ``small_session.py``, run by the real CLI against the fake model server): every page, bad
input, stores that are missing, damaged or being written, the event stream, and the login.

The server is the real aiohttp application on a loopback port (aiohttp's ``TestServer``);
the browser tests in ``tests/e2e/test_dashboard_browser.py`` drive it through chromium.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from keel.cli import dashboard_ledger
from keel.dashboard.registry import remember
from keel.dashboard.server import DashboardRefused, Settings, create_app, workspace_key
from tests.integration.conftest import KEEL
from tests.integration.small_session import SmallRun, record_small_session


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> SmallRun:
    return record_small_session(tmp_path_factory.mktemp("dashboard-small"))


@pytest.fixture
def workspace(recorded: SmallRun, tmp_path: Path) -> Path:
    """A copy of the recorded workspace, so a test may write to its store."""
    return Path(shutil.copytree(recorded.workspace, tmp_path / "ws", symlinks=True))


def _app(workspaces: list[Path], **settings: Any) -> web.Application:
    return create_app(Settings(workspaces=workspaces, env={}, **settings), ledger=dashboard_ledger)


@pytest_asyncio.fixture
async def client(workspace: Path) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(_app([workspace]))) as c:
        yield c


def _base(workspace: Path, session: str) -> str:
    return f"/w/{workspace_key(workspace.resolve())}/s/{session}"


async def _get(client: TestClient[Any, Any], path: str, status: int = 200) -> str:
    response = await client.get(path, allow_redirects=False)
    text = await response.text()
    assert response.status == status, (path, response.status, text[:500])
    return text


async def test_every_page_shows_the_session(
    client: TestClient[Any, Any], workspace: Path, recorded: SmallRun
) -> None:
    sid = recorded.session
    base = _base(workspace, sid)
    overview = await _get(client, "/")
    assert f'data-session="{sid}"' in overview and 'data-status="success"' in overview
    assert "Write the release notes" in overview and "3/3" in overview

    dag = await _get(client, f"{base}/dag")
    for nid in ("node-1", "node-2", "node-3"):
        assert f'data-node="{nid}" data-state="committed"' in dag
    assert 'data-from="node-1" data-to="node-2"' in dag and "notes/a.txt" in dag

    energy = await _get(client, f"{base}/energy")
    assert 'class="chart"' in energy and 'data-node="node-2" data-attempt="2"' in energy
    assert "unstable" in energy  # node-2's first attempt broke its contract

    calls = await _get(client, f"{base}/calls")
    assert 'data-stat="requests">7<' in calls
    assert calls.count("<tr data-call=") == 7
    only_node2 = await _get(client, f"{base}/calls?node=node-2")
    assert only_node2.count("<tr data-call=") == 3  # two actuator attempts, one verifier

    sandboxes = await _get(client, f"{base}/sandboxes")
    assert sandboxes.count('data-status="merged"') == 3
    assert sandboxes.count('data-status="flushed"') == 1  # node-2's first attempt
    sandbox_root = f"{workspace.resolve()}/.keel/sandboxes/{recorded.session}"
    assert f"{sandbox_root}/node-2/1" in sandboxes and f"{sandbox_root}/node-2/2" in sandboxes

    decisions = await _get(client, f"{base}/decisions")
    assert "Approvals and rejections <span" in decisions and "Sheaf checks" in decisions
    assert decisions.count('data-status="approved"') == 3

    ledger = await _get(client, f"{base}/ledger")
    commits = recorded.subjects[:3]
    assert ledger.count("<tr data-sha=") == 3, commits
    assert f"Keel-Session: {sid}" in ledger and "keel ledger rollback " in ledger

    node = await _get(client, f"{base}/node/node-2")
    assert "Attempt 1" in node and "Attempt 2" in node and "TODO: gamma" in node
    # the second bundle is shown as its change to the first: the TODO line replaced
    assert '<span class="del">-TODO: gamma</span>' in node
    assert '<span class="add">+gamma</span>' in node
    assert (
        (
            await client.get(
                f"/w/{workspace_key(workspace.resolve())}/s/{sid}", allow_redirects=False
            )
        )
        .headers["Location"]
        .endswith("/dag")
    )


async def test_unknown_ids_get_clear_pages(
    client: TestClient[Any, Any], workspace: Path, recorded: SmallRun
) -> None:
    key = workspace_key(workspace.resolve())
    assert "Unknown workspace" in await _get(
        client, f"/w/0123456789ab/s/{recorded.session}/dag", 404
    )
    assert "Unknown session" in await _get(client, f"/w/{key}/s/s-nope/dag", 404)
    assert "Unknown session" in await _get(client, f"/w/{key}/s/%3Cscript%3E/energy", 404)
    assert "Unknown node" in await _get(
        client, f"{_base(workspace, recorded.session)}/node/ghost", 404
    )
    assert "Not found" in await _get(client, f"{_base(workspace, recorded.session)}/nope", 404)
    page = await _get(client, f"/w/{key}/s/{'x' * 3000}/dag", 404)
    assert "x" * 200 not in page  # ids are cut in messages


async def test_huge_and_malformed_query_parameters_are_refused_clearly(
    client: TestClient[Any, Any],
    workspace: Path,
    recorded: SmallRun,
    caplog: pytest.LogCaptureFixture,
) -> None:
    base = _base(workspace, recorded.session)
    assert "too long" in await _get(client, "/?status=" + "x" * 5000, 400)
    assert "unknown status" in await _get(client, "/?status=bogus", 400)
    assert "unknown workspace" in await _get(client, "/?workspace=feedfeedfeed", 400)
    for page in ("0", "-1", "abc", "1" * 13):
        assert "page must be" in await _get(client, f"{base}/calls?page={page}", 400)
    # past the end (an old link): the last page, whose rows agree with the pager
    assert "<tr data-call=" in await _get(client, f"{base}/calls?page=999")
    # a request line beyond aiohttp's limit is refused by the HTTP parser, and the server lives
    response = await client.get("/?q=" + "y" * 20_000)
    assert response.status in (400, 414)
    # the client's mistake: answered, not a traceback on the dashboard's terminal
    assert not [r for r in caplog.records if r.name == "aiohttp.server" and r.exc_info]
    assert 'data-status="success"' in await _get(client, "/")


async def test_missing_and_damaged_stores_are_reported_and_left_alone(tmp_path: Path) -> None:
    missing, damaged = tmp_path / "missing", tmp_path / "damaged"
    missing.mkdir()
    (damaged / ".keel").mkdir(parents=True)
    garbage = b"this is not a database\x00" * 50
    (damaged / ".keel" / "keel.db").write_bytes(garbage)
    async with TestClient(TestServer(_app([missing, damaged]))) as c:
        overview = await _get(c, "/")
        assert "no session store at" in overview and "is not a SQLite database" in overview
        assert "No session matches" in overview
        dmg = f"/w/{workspace_key(damaged.resolve())}/s/s-1/dag"
        assert "not a SQLite database" in await _get(c, dmg, 503)
        assert "no session store" in await _get(
            c, f"/w/{workspace_key(missing.resolve())}/s/s-1/dag", 404
        )
    assert (damaged / ".keel" / "keel.db").read_bytes() == garbage
    assert not (missing / ".keel").exists()  # reading never creates a store


def _writer(workspace: Path) -> sqlite3.Connection:
    return sqlite3.connect(workspace / ".keel" / "keel.db", isolation_level=None, timeout=0)


async def test_pages_answer_while_a_session_writes_and_hold_no_lock(
    client: TestClient[Any, Any], workspace: Path, recorded: SmallRun
) -> None:
    base = _base(workspace, recorded.session)
    writer = _writer(workspace)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute(
            "UPDATE nodes SET state = 'failed' WHERE session_id = ? AND node_id = 'node-3'",
            (recorded.session,),
        )
        dag = await _get(client, f"{base}/dag")  # the write lock is held meanwhile
        assert 'data-node="node-3" data-state="committed"' in dag  # uncommitted: unseen
        writer.execute("COMMIT")
        dag = await _get(client, f"{base}/dag")
        assert 'data-node="node-3" data-state="failed"' in dag
        for tab in ("energy", "calls", "sandboxes", "decisions", "ledger"):
            await _get(client, f"{base}/{tab}")
        # no reader left behind: a full checkpoint is not blocked (busy flag 0)
        assert writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    finally:
        writer.close()


async def _next_event(stream: aiohttp.StreamReader, name: str) -> dict[str, Any]:
    event = None
    while True:
        line = (await stream.readline()).decode()
        assert line, "the stream ended"
        if line.startswith("event: "):
            event = line.strip().split(": ", 1)[1]
        elif line.startswith("data: ") and event == name:
            return dict(json.loads(line[6:]))


async def test_the_event_stream_announces_a_store_write(
    client: TestClient[Any, Any], workspace: Path, recorded: SmallRun
) -> None:
    key = workspace_key(workspace.resolve())
    response = await client.get(f"/events?workspace={key}&session={recorded.session}")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    await asyncio.wait_for(_next_event(response.content, "ready"), 10)
    writer = _writer(workspace)
    try:
        # an SSE stream holds no read transaction either
        assert writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
        writer.execute(
            "INSERT INTO node_transitions (session_id, node_id, state, detail, at)"
            " VALUES (?, 'node-3', 'running', '', '2026-12-04T00:00:00+00:00')",
            (recorded.session,),
        )
        change = await asyncio.wait_for(_next_event(response.content, "change"), 10)
        assert "mark" in change
    finally:
        writer.close()
        response.close()


async def test_a_write_to_another_session_is_not_announced_as_a_change(
    client: TestClient[Any, Any], workspace: Path, recorded: SmallRun
) -> None:
    key = workspace_key(workspace.resolve())
    watched = await client.get(f"/events?workspace={key}&session={recorded.session}")
    overview = await client.get("/events")
    await asyncio.wait_for(_next_event(watched.content, "ready"), 10)
    await asyncio.wait_for(_next_event(overview.content, "ready"), 10)
    writer = _writer(workspace)
    try:
        writer.execute(
            "INSERT INTO sessions (id, task, config, started_at) VALUES"
            " ('s-other', 'other', '{}', '2026-12-05T00:00:00+00:00')"
        )
        await asyncio.wait_for(_next_event(overview.content, "change"), 10)
        # the overview heard it; the session's stream must not (it would reload for nothing)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(_next_event(watched.content, "change"), 1.0)
    finally:
        writer.close()
        watched.close()
        overview.close()


async def test_the_overview_hears_a_workspace_whose_first_session_starts(
    tmp_path: Path, workspace: Path
) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path)}
    remember(workspace, env)
    app = create_app(Settings(env=env), ledger=dashboard_ledger)  # the registry's workspaces
    async with TestClient(TestServer(app)) as c:
        assert workspace.name in await _get(c, "/")
        stream = await c.get("/events")
        await asyncio.wait_for(_next_event(stream.content, "ready"), 10)
        newcomer = tmp_path / "newcomer"
        newcomer.mkdir()
        remember(newcomer, env)  # what keel.app does when a session starts there
        await asyncio.wait_for(_next_event(stream.content, "change"), 10)
        assert "newcomer" in await _get(c, "/")
        # the open stream now watches the newcomer's store too: its session's writes are heard
        shutil.copytree(workspace / ".keel", newcomer / ".keel")
        await asyncio.wait_for(_next_event(stream.content, "change"), 10)
        writer = _writer(newcomer)
        try:
            writer.execute("UPDATE sessions SET finished_at = NULL")
            await asyncio.wait_for(_next_event(stream.content, "change"), 10)
        finally:
            writer.close()
            stream.close()


async def test_the_overview_hears_the_registry_though_one_workspace_is_watched_already(
    tmp_path: Path, workspace: Path
) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path)}
    remember(workspace, env)
    app = create_app(Settings(env=env), ledger=dashboard_ledger)
    async with TestClient(TestServer(app)) as c:
        # the overview filtered to the one workspace watches the same store, not the registry
        filtered = await c.get(f"/events?workspace={workspace_key(workspace.resolve())}")
        await asyncio.wait_for(_next_event(filtered.content, "ready"), 10)
        stream = await c.get("/events")
        await asyncio.wait_for(_next_event(stream.content, "ready"), 10)
        newcomer = tmp_path / "newcomer"
        newcomer.mkdir()
        remember(newcomer, env)
        await asyncio.wait_for(_next_event(stream.content, "change"), 10)
        filtered.close()
        stream.close()


# --------------------------------------------------------------------------- auth


async def test_the_password_flow_and_the_cookie(workspace: Path) -> None:
    async with TestClient(TestServer(_app([workspace], password="hunter2-long"))) as c:
        r = await c.get("/w/x/s/y/dag?page=2", allow_redirects=False)
        assert r.status == 302 and r.headers["Location"].startswith("/login?next=")
        assert (await c.get("/events", allow_redirects=False)).status == 401
        assert (await c.get("/static/dashboard.css")).status == 200
        assert "Sign in" in await _get(c, "/login")

        r = await c.post("/login", data={"password": "wrong", "next": "/"}, allow_redirects=False)
        assert r.status == 401 and "Wrong password" in await r.text()
        assert "Set-Cookie" not in r.headers

        r = await c.post(
            "/login",
            data={"password": "hunter2-long", "next": "//evil.example/"},
            allow_redirects=False,
        )
        assert r.status == 303 and r.headers["Location"] == "/"
        cookie = r.headers["Set-Cookie"]
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"httponly", "path", "samesite"} <= attributes
        assert "SameSite=Lax" in cookie and "Path=/" in cookie
        assert "secure" not in attributes  # loopback: plain http must keep working
        assert 'data-status="success"' in await _get(c, "/")

        token = c.session.cookie_jar.filter_cookies(c.make_url("/"))["keel_dashboard"].value
        c.session.cookie_jar.clear()
        forged = token[:-4] + ("0000" if not token.endswith("0000") else "1111")
        r = await c.get("/", cookies={"keel_dashboard": forged}, allow_redirects=False)
        assert r.status == 302
        r = await c.get("/", cookies={"keel_dashboard": token}, allow_redirects=False)
        assert r.status == 200
        r = await c.post("/logout", cookies={"keel_dashboard": token}, allow_redirects=False)
        assert r.status == 303
        r = await c.get("/", cookies={"keel_dashboard": token}, allow_redirects=False)
        assert r.status == 302  # signed out: the old cookie is no longer accepted


async def test_login_attempts_are_rate_limited(workspace: Path) -> None:
    async with TestClient(TestServer(_app([workspace], password="right-one"))) as c:
        for _ in range(5):
            r = await c.post("/login", data={"password": "guess"}, allow_redirects=False)
            assert r.status == 401
        r = await c.post("/login", data={"password": "right-one"}, allow_redirects=False)
        assert r.status == 429 and int(r.headers["Retry-After"]) > 0
        assert "Too many failed attempts" in await r.text()


async def test_the_cookie_is_secure_off_loopback(workspace: Path) -> None:
    app = _app([workspace], host="0.0.0.0", password="pw-for-lan")  # served on loopback here
    async with TestClient(TestServer(app)) as c:
        r = await c.post("/login", data={"password": "pw-for-lan"}, allow_redirects=False)
        assert r.status == 303
        assert "Secure" in r.headers["Set-Cookie"]


def test_a_public_address_without_a_password_is_refused(workspace: Path) -> None:
    with pytest.raises(DashboardRefused, match="without a password"):
        _app([workspace], host="0.0.0.0")
    proc = subprocess.run(
        [*KEEL, "dashboard", "--host", "0.0.0.0", "--port", "0", "-w", str(workspace)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=workspace,
    )
    assert proc.returncode == 2 and "without a password" in proc.stderr
    assert proc.stdout == ""


async def test_a_foreign_host_header_is_refused_on_loopback(client: TestClient[Any, Any]) -> None:
    r = await client.get("/", headers={"Host": "attacker.example"})
    assert r.status == 421
    r = await client.get("/", headers={"Host": "localhost:3000"})
    assert r.status == 200


async def test_the_api_mount_is_outside_the_cookie_login(workspace: Path) -> None:
    api = web.Application()

    async def ping(_: web.Request) -> web.Response:
        return web.json_response({"pong": True})

    api.router.add_get("/ping", ping)
    app = create_app(Settings(workspaces=[workspace], env={}, password="pw"), api=api)
    async with TestClient(TestServer(app)) as c:
        r = await c.get("/api/v1/ping", allow_redirects=False)
        assert r.status == 200 and await r.json() == {"pong": True}
        assert (await c.get("/", allow_redirects=False)).status == 302


# --------------------------------------------------------------------------- keel sessions


def test_keel_sessions_filters_by_status_and_limits_the_list(
    recorded: SmallRun, tmp_path: Path
) -> None:
    env = {"HOME": str(recorded.workspace.parent), "PATH": "/usr/bin:/bin"}

    def listed(*flags: str) -> list[str]:
        proc = subprocess.run(
            [*KEEL, "sessions", "--json", "-w", str(recorded.workspace), *flags],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return [row["id"] for row in json.loads(proc.stdout)]

    assert listed("--status", "success") == [recorded.session]
    assert listed("--status", "failed") == []
    assert listed("--limit", "1") == [recorded.session]


def test_keel_sessions_lists_the_registered_workspaces(recorded: SmallRun, tmp_path: Path) -> None:
    home = recorded.workspace.parent
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [*KEEL, "sessions", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["id"] for r in rows] == [recorded.session]  # registered by the session itself
    row = rows[0]
    assert row["status"] == "success" and row["nodes"] == 3 and row["committed"] == 3
    assert row["workspace"] == str(recorded.workspace.resolve()) and row["calls"] == 7
    text = subprocess.run(
        [*KEEL, "sessions", "-w", str(recorded.workspace)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert text.returncode == 0 and recorded.session in text.stdout and "3/3" in text.stdout
    none = subprocess.run(
        [*KEEL, "sessions", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert none.returncode == 2 and "no Keel session" in none.stderr


def test_keel_sessions_passes_over_a_registered_folder_without_a_store(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    emptied = tmp_path / "emptied"  # a session ran here; its .keel/ was removed since
    emptied.mkdir()
    remember(emptied, env)
    proc = subprocess.run(
        [*KEEL, "sessions"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, "(no sessions)", "")


def test_keel_dashboard_refuses_what_it_cannot_serve(tmp_path: Path) -> None:
    def dashboard(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*KEEL, "dashboard", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )

    gone = dashboard("-w", str(tmp_path / "gone"))
    assert gone.returncode == 2 and "no workspace at" in gone.stderr
    port = dashboard("--port", "70000")
    assert port.returncode == 2 and "--port must be 0-65535" in port.stderr
    (tmp_path / "keel.toml").write_text('[dashboard]\npassword_env = "KEEL_UNSET_PW_VAR"\n')
    unset = dashboard()
    assert unset.returncode == 2 and "KEEL_UNSET_PW_VAR, which is not set" in unset.stderr
    (tmp_path / "keel.toml").unlink()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = dashboard("--port", str(taken.getsockname()[1]))
    assert busy.returncode == 1 and "address already in use" in busy.stderr


async def test_browsing_every_page_leaves_the_store_file_as_it_was(
    client: TestClient[Any, Any], workspace: Path, recorded: SmallRun
) -> None:
    store = workspace / ".keel" / "keel.db"
    checkpoint = _writer(workspace)
    checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file
    checkpoint.close()
    before = store.read_bytes()
    base = _base(workspace, recorded.session)
    await _get(client, "/")
    await _get(client, "/?status=success")
    for tab in ("dag", "energy", "calls", "sandboxes", "decisions", "ledger", "node/node-2"):
        await _get(client, f"{base}/{tab}")
    assert store.read_bytes() == before
    wal = store.with_name("keel.db-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # nothing was written to the log either
