"""``keel dashboard`` in a real headless browser (Debian's chromium through Playwright).

The stores are written by real sessions (the demo, a partial and a failed session against the
fake model server, and one still running); the dashboard is the real ``keel dashboard``
process, finding the workspaces through the registry the sessions wrote. The tests wait on
page state (selectors, events), never on time.
"""

from __future__ import annotations

import shutil
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.dashboard_sessions import (
    CHROMIUM,
    KEEL,
    Dashboard,
    Stores,
    home_env,
    record_stores,
)
from tests.fakes.model_server import FakeModelServer
from tests.integration.small_session import MODEL, TASK, init_workspace, keel_env, small_entries

playwright_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).is_file():  # scripts/test installs it
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)

Page = playwright_api.Page
NODE = 'g.node[data-node="{}"]'


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Stores:
    return record_stores(tmp_path_factory.mktemp("dashboard-home"))


@pytest.fixture(scope="module")
def dashboard(stores: Stores) -> Iterator[Dashboard]:
    server = Dashboard(home_env(stores.home), cwd=stores.home)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: object) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    errors: list[str] = []
    pg = context.new_page()
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert errors == [], errors  # no script error on any page


def _open_session(page: Page, dashboard: Dashboard, task: str) -> str:
    page.goto(dashboard.url + "/")
    row = page.locator("table.sessions tr", has_text=task)
    row.locator("a").first.click()
    page.wait_for_selector("svg.dag")
    return page.url.rsplit("/", 1)[0]


def test_the_overview_lists_every_session_with_its_status(page: Page, dashboard: Dashboard) -> None:
    page.goto(dashboard.url + "/")
    statuses = page.locator("table.sessions td:first-child .badge").all_inner_texts()
    assert sorted(statuses) == ["failed", "partial", "success"]
    demo = page.locator("table.sessions tr", has_text="calculator")
    assert "4/4" in demo.inner_text()
    page.select_option("select[name=status]", "partial")
    page.click("form.filters button")
    page.wait_for_url("**/?*status=partial*")
    assert page.locator("table.sessions tbody tr").count() == 1
    assert "Write three notes" in page.locator("table.sessions").inner_text()


def test_every_page_of_the_demo_renders_its_data(page: Page, dashboard: Dashboard) -> None:
    base = _open_session(page, dashboard, "calculator")
    states = page.locator("svg.dag g.node").evaluate_all("nodes => nodes.map(n => n.dataset.state)")
    assert states == ["committed"] * 4
    assert page.locator("svg.dag path.edge").count() >= 3
    assert "src/calculator/core.py" in page.locator("table.nodes").inner_text()

    page.click("a.tab:has-text('Energy')")
    page.wait_for_selector("svg.chart g.series")
    assert page.locator("svg.chart g.series").count() == 4
    assert page.locator("svg.chart line.epsilon").count() == 1
    rows = page.locator("table.energy tbody tr")
    assert rows.count() == 5 and "unstable" in rows.nth(3).inner_text()

    page.click("a.tab:has-text('Model calls')")
    assert page.locator("[data-stat=requests]").inner_text() == "8"
    assert page.locator("table.calls tbody tr").count() == 8
    assert "architect" in page.locator("table.calls").inner_text()

    page.click("a.tab:has-text('Sandboxes')")
    assert page.locator("table tbody .badge.merged").count() == 4

    page.click("a.tab:has-text('Decisions')")
    approvals = page.locator("details.decision", has_text="Approvals and rejections")
    assert approvals.locator("tbody tr").count() == 4
    verifications = page.locator("details.decision", has_text="Verification results")
    verifications.locator("summary").click()  # collapsed by default; opens on click
    assert verifications.locator("tbody tr").first.is_visible()

    page.click("a.tab:has-text('Ledger')")
    commits = page.locator("table.ledger tbody tr")
    assert commits.count() == 4
    command = commits.first.locator("code.command").inner_text()
    assert command.startswith("keel ledger rollback ") and "-w " in command
    assert "Keel-Bundle:" in commits.first.inner_text()

    page.goto(base + "/node/node-4")
    attempts = page.locator("details.attempt")
    assert attempts.count() == 2
    # the latest attempt is open and shows its bundle as the change to the first
    assert "changes since the previous bundle" in attempts.last.inner_text()
    assert attempts.last.locator("pre.diff span.add").count() >= 1
    first = attempts.first
    assert first.get_attribute("open") is None
    first.locator("summary").click()
    assert "tests/test_calculator.py" in first.inner_text()
    assert first.locator("td.message").count() == 2  # its failing test, in the evidence


def test_a_partial_and_a_failed_session_show_why(page: Page, dashboard: Dashboard) -> None:
    base = _open_session(page, dashboard, "Write three notes")
    assert page.locator(NODE.format("node-1")).get_attribute("data-state") == "committed"
    assert page.locator(NODE.format("node-2")).get_attribute("data-state") == "escalated"
    assert page.locator(NODE.format("node-3")).get_attribute("data-state") == "failed"
    page.goto(base + "/decisions")
    escalations = page.locator("details.decision", has_text="Escalations")
    assert escalations.locator("tbody tr").count() == 1
    page.goto(base + "/node/node-2")
    page.locator("details.attempt summary").first.click()
    assert "TODO: gamma" in page.locator("details.attempt").first.inner_text()

    base = _open_session(page, dashboard, "Write one note")
    assert page.locator(".session-head .badge").first.inner_text() == "failed"
    assert (
        "$" in page.locator(".facts").inner_text()
        and "/ $1.0000" in page.locator(".facts").inner_text()
    )


def test_a_running_session_changes_on_the_page_without_a_reload(
    page: Page, dashboard: Dashboard, stores: Stores
) -> None:
    workspace = init_workspace(stores.home / "live")
    with FakeModelServer(small_entries()) as server:
        server.hold_on("actuator", "node-2", 1)
        env = keel_env(server, stores.home, XDG_STATE_HOME=str(stores.home / ".state"))
        command = [*KEEL, "agent", "-y", "--json", "--model", MODEL, "-w", str(workspace), TASK]
        agent = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            # plan, speculation, node-1, then node-2's request, held: node-2 is running
            server.wait_for_requests(4, timeout=120)
            page.goto(dashboard.url + "/?status=running")
            assert page.locator("table.sessions tbody tr").count() == 1
            page.locator("table.sessions tbody a").first.click()
            page.wait_for_selector("#live.on")
            assert page.locator(NODE.format("node-1")).get_attribute("data-state") == "committed"
            assert page.locator(NODE.format("node-2")).get_attribute("data-state") == "running"
            assert page.locator(".session-head .badge").first.inner_text() == "running"
            page.evaluate("window.keelMarker = 'same page'")
            server.release()  # the session goes on while the page watches
            page.wait_for_selector(NODE.format("node-2") + '[data-state="committed"]')
            page.wait_for_selector(NODE.format("node-3") + '[data-state="committed"]')
            page.wait_for_selector('.session-head .badge[data-status="success"]')
            assert page.evaluate("window.keelMarker") == "same page"  # swapped in, not reloaded
            assert int(page.locator("body").get_attribute("data-updates") or 0) >= 1
        finally:
            server.release()
            agent.wait(timeout=120)
    assert agent.returncode == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_page_reconnects_after_the_dashboard_restarts(
    page: Page, stores: Stores, tmp_path: Path
) -> None:
    workspace = Path(shutil.copytree(stores.failed, tmp_path / "copy", symlinks=True))
    port = str(_free_port())
    env = home_env(stores.home)
    first = Dashboard(env, "--port", port, "-w", str(workspace))
    try:
        page.goto(first.url + "/")
        page.locator("table.sessions tbody a").first.click()
        page.wait_for_selector("#live.on")
    finally:
        first.stop()
    page.wait_for_selector("#live.off")
    db = sqlite3.connect(workspace / ".keel" / "keel.db")
    with db:  # written while no dashboard runs: the page catches up once it reconnects
        db.execute("UPDATE nodes SET state = 'awaiting_approval' WHERE node_id = 'node-1'")
    second = Dashboard(env, "--port", port, "-w", str(workspace))
    try:
        page.wait_for_selector("#live.on")  # by itself, no reload
        page.wait_for_selector(NODE.format("node-1") + '[data-state="awaiting_approval"]')
        with db:  # one committed write, as a session makes it
            db.execute("UPDATE nodes SET state = 'queued' WHERE node_id = 'node-1'")
        page.wait_for_selector(NODE.format("node-1") + '[data-state="queued"]')
    finally:
        db.close()
        second.stop()


def test_the_password_flow_in_the_browser(browser: object, stores: Stores, tmp_path: Path) -> None:
    (tmp_path / "keel.toml").write_text('[dashboard]\npassword_env = "KEEL_TEST_DASHBOARD_PW"\n')
    env = home_env(stores.home, KEEL_TEST_DASHBOARD_PW="correct horse battery")
    server = Dashboard(env, cwd=tmp_path)
    context = browser.new_context()  # type: ignore[attr-defined]
    try:
        page = context.new_page()
        page.goto(server.url + "/?status=success")
        assert "/login" in page.url
        page.fill("input[name=password]", "wrong")
        page.click("section.login button")
        assert page.locator("p.error").inner_text() == "Wrong password."
        assert context.cookies() == []
        page.fill("input[name=password]", "correct horse battery")
        page.click("section.login button")
        page.wait_for_selector("table.sessions")
        assert page.url.endswith("/?status=success")  # back where the login started
        (cookie,) = context.cookies()
        assert cookie["name"] == "keel_dashboard" and cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Lax" and cookie["path"] == "/"
        assert cookie["secure"] is False  # loopback
        assert page.evaluate("document.cookie") == ""  # HttpOnly: scripts cannot read it
        page.wait_for_selector("#live.on")  # the event stream is signed in too

        forged = browser.new_context()  # type: ignore[attr-defined]
        forged.add_cookies(
            [{**cookie, "value": cookie["value"][:-6] + "abcdef"}]  # type: ignore[list-item]
        )
        other = forged.new_page()
        other.goto(server.url + "/")
        assert "/login" in other.url
        forged.close()

        page.click("form.logout button")
        page.wait_for_url("**/login")
        page.goto(server.url + "/")
        assert "/login" in page.url
    finally:
        context.close()
        server.stop()
