"""The dashboard's HTML: every stored value is escaped; the graph layout survives bad plans."""

from __future__ import annotations

import os
import re
import socket
from typing import Any

from keel.dashboard import charts, render, tabs
from keel.dashboard.queries import Reader
from keel.dashboard.server import Auth, _safe_next, is_loopback

EVIL = '<script>alert("x")</script>'


def _summary(**extra: Any) -> dict[str, Any]:
    return {
        "id": "s-1",
        "task": EVIL,
        "status": "running",
        "started_at": "2026-12-04T10:00:00+00:00",
        "duration_s": 5.0,
        "reason": EVIL,
        "nodes": 1,
        "committed": 0,
        "counts": {"running": 1},
        "calls": 1,
        "cost_usd": 0.5,
        "max_cost": 1.0,
        "max_steps": 10,
        "epsilon": 0.1,
        "mode": EVIL,
        **extra,
    }


def _node(nid: str, deps: list[str], state: str = "queued") -> dict[str, Any]:
    return {
        "id": nid,
        "title": EVIL,
        "kind": "code",
        "owns": [EVIL],
        "depends_on": deps,
        "state": state,
        "attempts": 1,
    }


def test_every_stored_string_is_escaped_on_every_page() -> None:
    graph = {"nodes": [_node(EVIL, []), _node("b", [EVIL], state=EVIL)]}
    attempt = {
        "attempt": 1,
        "energy": {"v": 1.0},
        "stable": False,
        "at": EVIL,
        "bundle": {
            "writes": [{"path": EVIL, "content": EVIL}],
            "diffs": [{"path": "p", "patch": "+" + EVIL}],
            "commands": [EVIL],
        },
        "evidence": [{"component": EVIL, "source": EVIL, "message": EVIL, "path": EVIL}],
    }
    detail = {
        "node": _node(EVIL, []),
        "attempts": [attempt],
        "transitions": [{"state": EVIL, "detail": EVIL, "at": EVIL}],
        "escalations": [{"report": {"reason": EVIL}, "at": EVIL}],
        "approvals": [
            {"decision": EVIL, "actor": EVIL, "note": EVIL, "ledger_sha": EVIL, "at": EVIL}
        ],
        "calls": 1,
    }
    call = {
        "id": 1,
        "at": EVIL,
        "tier": EVIL,
        "model": EVIL,
        "node_id": EVIL,
        "attempt": 1,
        "input_tokens": 1,
        "output_tokens": 1,
        "latency_s": 0.1,
        "cost_usd": 0.1,
        "ok": 0,
        "error": EVIL,
        "prompt": EVIL,
        "response": EVIL,
        "prompt_chars": 1,
        "reply_chars": 1,
    }
    totals = {
        "requests": 1,
        "input_tokens": 1,
        "output_tokens": 1,
        "cost_usd": 0.1,
        "latency_s": 0.1,
        "slowest_s": 0.1,
        "failed": 1,
    }
    entry = {
        "sha": EVIL,
        "timestamp": EVIL,
        "title": EVIL,
        "node": EVIL,
        "session": EVIL,
        "bundle": EVIL,
        "energy": EVIL,
        "approved_by": EVIL,
        "files": [EVIL],
    }
    pages = [
        render.session_page(
            "dag",
            _summary(),
            charts.dag(graph, base="/b"),
            base="/b",
            workspace={"path": EVIL, "name": EVIL, "key": "k"},
            signed_in=True,
            stream="/events",
        ),
        tabs.node_detail(detail, base="/b"),
        tabs.calls(totals, [call], page=1, pages=2, base="/b", tier=EVIL, node=EVIL),
        tabs.ledger([entry], workspace=EVIL),
        render.overview(
            [{**_summary(), "workspace_key": EVIL, "workspace": EVIL, "workspace_name": EVIL}],
            [{"key": EVIL, "name": EVIL, "path": EVIL}],
            workspace=EVIL,
            status=None,
            statuses=["x"],
            problems=[EVIL],
            signed_in=False,
            stream="/events",
        ),
        render.message_page(EVIL, EVIL, detail=EVIL),
        render.login_page(error=EVIL, next_url=EVIL),
    ]
    for page in pages:
        assert "<script>alert" not in page
        assert "&lt;script&gt;" in page
        # the only scripts are the dashboard's own file
        assert re.findall(r"<script[^>]*>", page) in (
            [],
            ['<script src="/static/dashboard.js" defer>'],
        )


def test_the_graph_layout_survives_cycles_and_unknown_dependencies() -> None:
    nodes = [_node("a", ["c"]), _node("b", ["a", "ghost"]), _node("c", ["b"]), _node("d", ["d"])]
    depth = charts.layers(nodes)
    assert set(depth) == {"a", "b", "c", "d"}
    svg = charts.dag({"nodes": nodes}, base="/b")
    assert svg.count('class="node state-queued"') == 4
    assert 'data-to="b"' in svg and 'data-from="ghost"' not in svg


def test_a_chain_is_laid_out_left_to_right() -> None:
    nodes = [_node("n3", ["n2"]), _node("n1", []), _node("n2", ["n1"])]
    assert charts.layers(nodes) == {"n1": 0, "n2": 1, "n3": 2}


def test_session_cookies_cannot_be_forged_or_reused_after_sign_out() -> None:
    auth = Auth("pw", secure=False)
    token = auth.issue()
    assert auth.valid(token)
    payload, _, signature = token.rpartition(".")
    assert not auth.valid(payload + "." + "0" * len(signature))
    assert not auth.valid("0." + payload.partition(".")[2] + "." + signature)  # changed time
    assert not Auth("pw", secure=False).valid(token)  # another process's key
    assert not auth.valid("") and not auth.valid("x" * 5000) and not auth.valid(None)
    auth.revoke(token)
    assert not auth.valid(token)


def test_failed_logins_lock_the_address_not_others() -> None:
    auth = Auth("pw", secure=False)
    for _ in range(5):
        assert auth.locked_for("10.0.0.1") == 0
        auth.failed("10.0.0.1")
    assert 0 < auth.locked_for("10.0.0.1") <= 60
    assert auth.locked_for("10.0.0.2") == 0


def test_only_local_paths_are_followed_after_login() -> None:
    assert _safe_next("/w/x/s/y/dag?page=2") == "/w/x/s/y/dag?page=2"
    bad_ones = ("//evil.example/", "https://evil.example/", "\\\\evil", "/\\evil", "", None, "x")
    for bad in (*bad_ones, "/\r\nSet-Cookie: a=b", "/\x00"):
        assert _safe_next(bad) == "/"


def test_a_process_id_that_is_not_one_process_is_not_alive() -> None:
    reader, here = Reader.for_environment({}), socket.gethostname()
    assert not reader.alive(0, here) and not reader.alive(-1, here)
    assert reader.alive(os.getpid(), here)
    assert reader.alive(12345, "another-host")  # cannot tell: shown as running


def test_loopback_names() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert is_loopback(host)
    for host in ("0.0.0.0", "192.168.1.2", "example.com", "::"):
        assert not is_loopback(host)
