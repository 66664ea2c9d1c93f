"""The dashboard's HTML, rendered on the server from plain data.

Why plain Python and no template engine: the pages are tables, a few cards and two SVG
charts, and one escaping rule covers them all. Every value from a store, a path, a query
parameter or git passes through :func:`esc` (``html.escape`` with quotes) before it reaches
the page; only :class:`Markup` (what this module built) is inserted as it is. Tests feed
``<script>`` through every field and look for it.

This module holds the escaping, the page frame (header, live badge, session header and tabs),
the overview, the login and message pages; :mod:`keel.dashboard.tabs` renders each tab's
content and :mod:`keel.dashboard.charts` the two SVG drawings, so a page is complete without
JavaScript. The one script (``static/dashboard.js``) only swaps in fresh content when the
server says the store changed.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

Row = dict[str, Any]

TABS = (
    ("dag", "DAG"),
    ("energy", "Energy"),
    ("calls", "Model calls"),
    ("sandboxes", "Sandboxes"),
    ("decisions", "Decisions"),
    ("ledger", "Ledger"),
)
#: Shown for a value that is not there (an en dash).
NONE = "\u2013"


class Markup(str):
    """Text that is already HTML (built here); everything else is escaped."""


def esc(value: Any) -> Markup:
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[Any], sep: str = "") -> Markup:
    return Markup(sep.join(esc(p) for p in parts))


def cut(text: Any, limit: int) -> str:
    value = "" if text is None else str(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def when(at: Any) -> str:
    """An ISO timestamp as ``YYYY-MM-DD HH:MM:SS`` (UTC as stored)."""
    return str(at or "")[:19].replace("T", " ")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def money(value: Any) -> str:
    try:
        return f"${float(value):.4f}"
    except (TypeError, ValueError):
        return NONE


def number(value: Any, digits: int = 3) -> str:
    if value is None:
        return NONE
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return esc(value)


def badge(status: str) -> Markup:
    return Markup(
        f'<span class="badge {esc(status)}" data-status="{esc(status)}">{esc(status)}</span>'
    )


def document(
    title: str,
    body: Markup,
    *,
    stream: str | None = None,
    signed_in: bool = False,
    crumbs: Sequence[tuple[str, str | None]] = (),
) -> Markup:
    """A whole page. ``stream``: the SSE URL that announces changes to this page's data."""
    trail = join(
        Markup(f'<a href="{esc(href)}">{esc(label)}</a>')
        if href
        else Markup(f"<span>{esc(label)}</span>")
        for label, href in crumbs
    )
    live = (
        Markup(
            f'<span id="live" class="live" data-stream="{esc(stream)}" title="live updates">'
            "connecting…</span>"
        )
        if stream
        else Markup("")
    )
    logout = (
        Markup(
            '<form method="post" action="/logout" class="logout">'
            '<button type="submit">Sign out</button></form>'
        )
        if signed_in
        else Markup("")
    )
    return Markup(
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · Keel</title>"
        '<link rel="stylesheet" href="/static/dashboard.css">'
        '<script src="/static/dashboard.js" defer></script></head><body>'
        '<header class="top"><a class="brand" href="/">Keel</a>'
        f'<nav class="crumbs">{trail}</nav>{live}{logout}</header>'
        f'<main id="content">{body}</main></body></html>'
    )


def message_page(title: str, text: str, *, detail: str = "") -> Markup:
    """An error or notice page: what happened, in words, and a way back."""
    more = Markup(f'<p class="detail">{esc(detail)}</p>') if detail else Markup("")
    body = Markup(
        f'<section class="notice"><h1>{esc(title)}</h1><p>{esc(text)}</p>{more}'
        '<p><a href="/">Back to all sessions</a></p></section>'
    )
    return document(title, body, crumbs=[("Sessions", "/")])


def login_page(*, error: str = "", next_url: str = "/", locked_for: int = 0) -> Markup:
    problem = Markup(f'<p class="error" role="alert">{esc(error)}</p>') if error else Markup("")
    disabled = " disabled" if locked_for else ""
    body = Markup(
        '<section class="login"><h1>Sign in</h1>'
        "<p>This dashboard is protected by the password in <code>[dashboard]</code>.</p>"
        f"{problem}"
        '<form method="post" action="/login">'
        f'<input type="hidden" name="next" value="{esc(next_url)}">'
        '<label>Password <input type="password" name="password" autocomplete="current-password"'
        f" autofocus required{disabled}></label>"
        f'<button type="submit"{disabled}>Sign in</button></form></section>'
    )
    return document("Sign in", body)


def overview(
    sessions: Sequence[Row],
    workspaces: Sequence[Row],
    *,
    workspace: str | None,
    status: str | None,
    statuses: Sequence[str],
    problems: Sequence[str],
    signed_in: bool,
    stream: str,
) -> Markup:
    """The 50 newest sessions of the chosen workspaces, with filters."""
    ws_options = join(
        Markup(
            f'<option value="{esc(w["key"])}"{" selected" if w["key"] == workspace else ""}>'
            f"{esc(w['name'])} — {esc(w['path'])}</option>"
        )
        for w in workspaces
    )
    st_options = join(
        Markup(f'<option value="{esc(s)}"{" selected" if s == status else ""}>{esc(s)}</option>')
        for s in statuses
    )
    filters = Markup(
        '<form class="filters" method="get" action="/">'
        f'<label>Workspace <select name="workspace"><option value="">all</option>{ws_options}'
        "</select></label>"
        f'<label>Status <select name="status"><option value="">any</option>{st_options}'
        '</select></label><button type="submit">Filter</button></form>'
    )
    notes = join(Markup(f'<p class="warning">{esc(p)}</p>') for p in problems)
    if sessions:
        rows = join(_session_row(s) for s in sessions)
        table = Markup(
            '<table class="sessions"><thead><tr><th>Status</th><th>Session</th>'
            "<th>Workspace</th><th>Task</th><th>Nodes</th><th>Cost</th><th>Steps</th>"
            f"<th>Started (UTC)</th><th>Duration</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    elif workspaces:
        table = Markup('<p class="empty">No session matches.</p>')
    else:
        table = Markup(
            '<p class="empty">No workspace yet: run <code>keel demo -w DIR</code> or '
            "<code>keel agent</code>, or start the dashboard with <code>-w DIR</code>.</p>"
        )
    body = Markup(f"<h1>Sessions</h1>{filters}{notes}{table}")
    return document("Sessions", body, stream=stream, signed_in=signed_in)


def _session_row(s: Row) -> Markup:
    href = f"/w/{s['workspace_key']}/s/{s['id']}/dag"
    return Markup(
        f'<tr data-session="{esc(s["id"])}">'
        f"<td>{badge(s['status'])}</td>"
        f'<td><a href="{esc(href)}"><code>{esc(s["id"])}</code></a></td>'
        f'<td title="{esc(s["workspace"])}">{esc(s["workspace_name"])}</td>'
        f'<td class="task" title="{esc(cut(s["task"], 2000))}">{esc(cut(s["task"], 110))}</td>'
        f'<td class="num">{s["committed"]}/{s["nodes"]}</td>'
        f"<td>{_budget(s['cost_usd'], s.get('max_cost'), money)}</td>"
        f"<td>{_budget(s['calls'], s.get('max_steps'), str)}</td>"
        f"<td>{esc(when(s['started_at']))}</td>"
        f'<td class="num">{esc(duration(s.get("duration_s")))}</td></tr>'
    )


def _budget(used: Any, limit: Any, show: Any) -> Markup:
    if limit in (None, 0):
        return Markup(f'<span class="num">{esc(show(used))}</span>')
    share = min(1.0, float(used) / float(limit)) if float(limit) else 0.0
    level = "high" if share >= 0.9 else "mid" if share >= 0.6 else "low"
    return Markup(
        f'<span class="num">{esc(show(used))} / {esc(show(limit))}</span>'
        f'<span class="meter {level}"><span style="width:{share * 100:.0f}%"></span></span>'
    )


def session_page(
    tab: str,
    summary: Row,
    content: Markup,
    *,
    base: str,
    workspace: Row,
    signed_in: bool,
    stream: str,
    title: str | None = None,
) -> Markup:
    """A session page: its header (status, task, counts, budget) and one tab's content."""
    tabs = join(
        Markup(
            f'<a href="{esc(base)}/{name}" class="tab{" active" if name == tab else ""}">'
            f"{esc(label)}</a>"
        )
        for name, label in TABS
    )
    counts = join(
        Markup(f'<span class="count state-{esc(k)}">{esc(k)} {esc(v)}</span>')
        for k, v in sorted(summary["counts"].items())
        if v
    )
    reason = (
        Markup(f'<p class="reason">{esc(cut(summary["reason"], 400))}</p>')
        if summary.get("reason")
        else Markup("")
    )
    head = Markup(
        f'<section class="session-head">'
        f"<h1>{badge(summary['status'])} <code>{esc(summary['id'])}</code></h1>"
        f'<p class="task">{esc(cut(summary["task"], 1000))}</p>{reason}'
        '<dl class="facts">'
        f"<div><dt>Workspace</dt><dd>{esc(workspace['path'])}</dd></div>"
        f"<div><dt>Nodes</dt><dd>{summary['committed']}/{summary['nodes']} committed {counts}</dd>"
        "</div>"
        f"<div><dt>Cost</dt><dd>{_budget(summary['cost_usd'], summary.get('max_cost'), money)}</dd>"
        "</div>"
        f"<div><dt>Steps</dt><dd>{_budget(summary['calls'], summary.get('max_steps'), str)}</dd>"
        "</div>"
        f"<div><dt>Started (UTC)</dt><dd>{esc(when(summary['started_at']))}</dd></div>"
        f"<div><dt>Duration</dt><dd>{esc(duration(summary.get('duration_s')))}</dd></div>"
        f"<div><dt>Mode</dt><dd>{esc(summary.get('mode') or NONE)}, ε = "
        f"{esc(summary.get('epsilon') if summary.get('epsilon') is not None else NONE)}</dd></div>"
        f'</dl><nav class="tabs">{tabs}</nav></section>'
    )
    crumbs = [
        ("Sessions", "/"),
        (workspace["name"], f"/?workspace={workspace['key']}"),
        (summary["id"], None),
    ]
    return document(
        title or f"{summary['id']} {tab}",
        Markup(f'{head}<section class="tab-body" id="tab-{esc(tab)}">{content}</section>'),
        stream=stream,
        signed_in=signed_in,
        crumbs=crumbs,
    )


def table_or_empty(rows: Markup, headers: Sequence[str], cls: str = "") -> Markup:
    if not rows:
        return Markup('<p class="empty">None.</p>')
    head = join(Markup(f"<th>{esc(h)}</th>") for h in headers)
    return Markup(
        f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
    )


def empty(text: str) -> Markup:
    return Markup(f'<p class="empty">{esc(text)}</p>')
