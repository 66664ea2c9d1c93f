"""The dashboard's HTML, rendered on the server from plain data.

Why plain Python and no template engine: the pages are tables, a few cards and two SVG
charts, and one escaping rule covers them all. Every value from a store, a path, a query
parameter or git passes through :func:`esc` (``html.escape`` with quotes) before it reaches
the page; only :class:`Markup` (what this module built) is inserted as it is. Tests feed
``<script>`` through every field and look for it.

The charts are inline SVG drawn here (the DAG in layers by dependency, the convergence of
V(x) per attempt against epsilon), so a page is complete without JavaScript; the one script
(``static/dashboard.js``) only swaps in fresh content when the server says the store changed.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

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
_PALETTE = ("#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626")


_CALL_COLUMNS: tuple[str, ...] = ("#", "At", "Tier", "Model", "Node", "Att.", "In", "Out")
_CALL_COLUMNS += ("Latency", "Cost", "Prompt", "Reply")
_SANDBOX_COLUMNS = ("Node", "Attempt", "Sandbox", "Node state", "V(x)", "Directory", "At")
_LEDGER_COLUMNS = ("Commit", "At", "Title", "Node", "Trailers", "Files", "Roll back")


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


# --------------------------------------------------------------------------- layout


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


# --------------------------------------------------------------------------- overview


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
            f"<th>Started</th><th>Duration</th></tr></thead><tbody>{rows}</tbody></table>"
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


# --------------------------------------------------------------------------- session pages


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
        f"<div><dt>Started</dt><dd>{esc(when(summary['started_at']))}</dd></div>"
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


def layers(nodes: Sequence[Row]) -> dict[str, int]:
    """Each node's column: one more than its deepest dependency (cycles and unknown
    dependencies are cut, never followed forever)."""
    by_id = {n["id"]: n for n in nodes}
    depth: dict[str, int] = {}

    def visit(nid: str, path: frozenset[str]) -> int:
        if nid in depth:
            return depth[nid]
        deps = [d for d in by_id[nid]["depends_on"] if d in by_id and d not in path]
        value = 1 + max((visit(d, path | {nid}) for d in deps), default=-1)
        depth[nid] = value
        return value

    for n in nodes:
        visit(n["id"], frozenset())
    return depth


def dag(graph: Row, *, base: str) -> Markup:
    """The plan as an SVG graph (cards coloured by state, edges by dependency) and a table of
    the nodes with their owned files."""
    nodes = graph["nodes"]
    if not nodes:
        return Markup('<p class="empty">No plan yet.</p>')
    depth = layers(nodes)
    columns: dict[int, list[Row]] = {}
    for n in nodes:
        columns.setdefault(depth[n["id"]], []).append(n)
    w, h, gap_x, gap_y, pad = 210, 62, 70, 22, 16
    pos: dict[str, tuple[int, int]] = {}
    for col, members in columns.items():
        for row, n in enumerate(members):
            pos[n["id"]] = (pad + col * (w + gap_x), pad + row * (h + gap_y))
    width = pad * 2 + (max(columns) + 1) * (w + gap_x) - gap_x
    height = pad * 2 + max(len(m) for m in columns.values()) * (h + gap_y) - gap_y
    edges = []
    for n in nodes:
        x2, y2 = pos[n["id"]]
        for d in n["depends_on"]:
            if d not in pos:
                continue
            x1, y1 = pos[d]
            sx, sy, ex, ey = x1 + w, y1 + h // 2, x2, y2 + h // 2
            mid = (sx + ex) / 2
            edges.append(
                Markup(
                    f'<path class="edge" d="M{sx},{sy} C{mid},{sy} {mid},{ey} {ex},{ey}"'
                    f' data-from="{esc(d)}" data-to="{esc(n["id"])}" marker-end="url(#arrow)"/>'
                )
            )
    cards = []
    for n in nodes:
        x, y = pos[n["id"]]
        href = f"{base}/node/{n['id']}"
        cards.append(
            Markup(
                f'<a href="{esc(href)}" class="node-link"><g class="node state-{esc(n["state"])}"'
                f' data-node="{esc(n["id"])}" data-state="{esc(n["state"])}">'
                f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8"/>'
                f'<text x="{x + 10}" y="{y + 20}" class="node-id">{esc(cut(n["id"], 24))}'
                f"</text>"
                f'<text x="{x + w - 10}" y="{y + 20}" class="node-state" text-anchor="end">'
                f"{esc(n['state'])}</text>"
                f'<text x="{x + 10}" y="{y + 42}" class="node-title">{esc(cut(n["title"], 30))}'
                f"</text><title>{esc(n['title'])}</title></g></a>"
            )
        )
    svg = Markup(
        f'<svg class="dag" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        ' role="img" aria-label="plan graph">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7"'
        ' markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker>'
        f"</defs>{join(edges)}{join(cards)}</svg>"
    )
    rows = join(
        Markup(
            f'<tr data-node="{esc(n["id"])}"><td><a href="{esc(base)}/node/{esc(n["id"])}">'
            f"<code>{esc(n['id'])}</code></a></td><td>{esc(n['title'])}</td>"
            f"<td>{esc(n['kind'])}</td><td>{badge(n['state'])}</td>"
            f'<td class="num">{n["attempts"]}</td>'
            f"<td>{join((Markup(f'<code>{esc(d)}</code>') for d in n['depends_on']), ' ')}</td>"
            f"<td>{join((Markup(f'<code>{esc(p)}</code>') for p in n['owns']), ' ')}</td></tr>"
        )
        for n in nodes
    )
    legend = join(
        Markup(f'<span class="count state-{s}">{s}</span>')
        for s in (
            "queued",
            "running",
            "verifying",
            "awaiting_approval",
            "committed",
            "failed",
            "escalated",
        )
    )
    return Markup(
        f'<div class="legend">{legend}</div><div class="graph">{svg}</div>'
        '<table class="nodes"><thead><tr><th>Node</th><th>Title</th><th>Kind</th><th>State</th>'
        "<th>Attempts</th><th>Depends on</th><th>Owns</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def node_detail(detail: Row, *, base: str) -> Markup:
    node = detail["node"]
    attempts = []
    for a in detail["attempts"]:
        e = a["energy"] if isinstance(a["energy"], dict) else {}
        comps = join(
            Markup(f'<td class="num">{number(e.get(k))}</td>')
            for k in ("v_syn", "v_str", "v_log", "v_boot", "v_sheaf", "v")
        )
        attempts.append(
            Markup(
                f'<details class="attempt" open><summary>Attempt {esc(a["attempt"])} · '
                f"V(x) = {number(e.get('v'))} · {'stable' if a['stable'] else 'unstable'} · "
                f"{esc(when(a['at']))}</summary>"
                '<table class="energy"><thead><tr><th>V_syn</th><th>V_str</th><th>V_log</th>'
                f"<th>V_boot</th><th>V_sheaf</th><th>V(x)</th></tr></thead><tbody><tr>{comps}</tr>"
                f"</tbody></table><h4>Bundle</h4>{bundle(a.get('bundle'))}"
                f"<h4>Evidence</h4>{evidence(a.get('evidence'))}</details>"
            )
        )
    transitions = join(
        Markup(
            f"<tr><td>{esc(when(t['at']))}</td><td>{badge(t['state'])}</td>"
            f"<td>{esc(cut(t['detail'], 300))}</td></tr>"
        )
        for t in detail["transitions"]
    )
    escalations = join(
        Markup(f'<pre class="json">{esc(cut(json.dumps(e["report"], indent=1), 6000))}</pre>')
        for e in detail["escalations"]
    )
    approvals = join(
        Markup(
            f"<tr><td>{esc(when(a['at']))}</td><td>{esc(a['decision'])}</td><td>"
            f"{esc(a['actor'])}</td>"
            f"<td><code>{esc((a.get('ledger_sha') or '')[:12])}</code></td>"
            f"<td>{esc(cut(a.get('note'), 400))}</td></tr>"
        )
        for a in detail["approvals"]
    )
    owns = join((Markup(f"<code>{esc(p)}</code>") for p in node["owns"]), " ")
    return Markup(
        f'<section class="node-detail" data-node="{esc(node["id"])}"'
        f' data-state="{esc(node["state"])}">'
        f"<h2><code>{esc(node['id'])}</code> {esc(node['title'])} {badge(node['state'])}</h2>"
        f"<p>{esc(node['kind'])} · owns {owns or NONE} · {detail['calls']} model calls · "
        f'<a href="{esc(base)}/calls?node={esc(node["id"])}">its calls</a></p>'
        f"{join(attempts) or _empty('No attempt yet.')}"
        "<h3>State changes</h3><table><thead><tr><th>At</th><th>State</th><th>Detail</th></tr>"
        f"</thead><tbody>{transitions}</tbody></table>"
        "<h3>Approvals</h3>"
        f"{_table_or_empty(approvals, ('At', 'Decision', 'Who', 'Commit', 'Feedback'))}"
        f"<h3>Escalations</h3>{escalations or _empty('None.')}</section>"
    )


def bundle(value: Any) -> Markup:
    """A bundle's writes (content), diffs (patch), deletes and commands."""
    if not isinstance(value, dict):
        return Markup('<p class="empty">No bundle (the reply could not be used).</p>')
    parts = []
    for w in value.get("writes") or []:
        if isinstance(w, dict):
            parts.append(
                Markup(
                    f'<div class="file"><div class="path">write <code>{esc(w.get("path"))}</code>'
                    "</div>"
                    f'<pre class="diff add">{esc(cut(w.get("content"), 20000))}</pre></div>'
                )
            )
    for d in value.get("diffs") or []:
        if isinstance(d, dict):
            parts.append(
                Markup(
                    f'<div class="file"><div class="path">patch <code>{esc(d.get("path"))}</code>'
                    "</div>"
                    f'<pre class="diff">{diff_lines(cut(d.get("patch"), 20000))}</pre></div>'
                )
            )
    for path in value.get("deletes") or []:
        parts.append(
            Markup(
                f'<div class="file"><div class="path">delete <code>{esc(path)}</code></div></div>'
            )
        )
    commands = value.get("commands") or []
    if commands:
        parts.append(
            Markup(
                "<p>"
                f"commands: {join((Markup(f'<code>{esc(c)}</code>') for c in commands), ' ')}</p>"
            )
        )
    return join(parts) or Markup('<p class="empty">An empty bundle.</p>')


def diff_lines(patch: str) -> Markup:
    out = []
    for line in patch.splitlines():
        cls = (
            "add"
            if line.startswith("+")
            else "del"
            if line.startswith("-")
            else "hunk"
            if line.startswith("@@")
            else ""
        )
        out.append(Markup(f'<span class="{cls}">{esc(line)}</span>'))
    return join(out, "\n")


def evidence(items: Any) -> Markup:
    if not isinstance(items, list) or not items:
        return Markup('<p class="empty">No residuals.</p>')
    rows = []
    for item in items:
        if not isinstance(item, dict):
            continue
        where = item.get("path") or item.get("test_id") or item.get("command") or ""
        if item.get("line"):
            where = f"{where}:{item['line']}"
        rows.append(
            Markup(
                f"<tr><td>{esc(item.get('component'))}</td><td>{esc(item.get('source'))}</td>"
                f"<td><code>{esc(cut(where, 200))}</code></td>"
                f'<td class="num">{number(item.get("magnitude"), 2)}</td>'
                "<td>"
                f"{esc(cut(item.get('message'), 600))}"
                f"{' (already failing)' if item.get('baseline') else ''}</td></tr>"
            )
        )
    return _table_or_empty(join(rows), ("Component", "Source", "Where", "Magnitude", "Message"))


def _table_or_empty(rows: Markup, headers: Sequence[str], cls: str = "") -> Markup:
    if not rows:
        return Markup('<p class="empty">None.</p>')
    head = join(Markup(f"<th>{esc(h)}</th>") for h in headers)
    return Markup(
        f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
    )


def energy(rows: Sequence[Row], epsilon: float | None, *, base: str) -> Markup:
    if not rows:
        return Markup('<p class="empty">No attempt measured yet.</p>')
    table = join(
        Markup(
            f'<tr data-node="{esc(r["node"])}" data-attempt="{r["attempt"]}">'
            f'<td><a href="{esc(base)}/node/{esc(r["node"])}"><code>{esc(r["node"])}</code></a>'
            "</td>"
            f'<td class="num">{r["attempt"]}</td>'
            + "".join(
                f'<td class="num">{number(r[k])}</td>'
                for k in ("v_syn", "v_str", "v_log", "v_boot", "v_sheaf")
            )
            + f'<td class="num strong">{number(r["v"])}</td>'
            f"<td>{'stable' if r['stable'] else 'unstable'}</td></tr>"
        )
        for r in rows
    )
    eps = NONE if epsilon is None else number(epsilon)
    return Markup(
        f"{convergence_chart(rows, epsilon)}"
        f"<p>ε = {esc(eps)}: an attempt is stable when V(x) &lt; ε.</p>"
        '<table class="energy"><thead><tr><th>Node</th><th>Attempt</th><th>V_syn</th><th>V_str</th>'
        "<th>V_log</th><th>V_boot</th><th>V_sheaf</th><th>V(x)</th><th>Result</th></tr></thead>"
        f"<tbody>{table}</tbody></table>"
    )


def convergence_chart(rows: Sequence[Row], epsilon: float | None) -> Markup:
    """V(x) per attempt, one line per node, with the epsilon line (inline SVG)."""
    series: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        if r["v"] is not None and math.isfinite(r["v"]):
            series.setdefault(r["node"], []).append((r["attempt"], r["v"]))
    if not series:
        return Markup("")
    width, height, left, right, top, bottom = 720, 270, 52, 150, 26, 34
    max_x = max(a for points in series.values() for a, _ in points)
    max_y = max([v for points in series.values() for _, v in points] + [(epsilon or 0) * 2, 0.1])
    span_x = max(1, max_x - 1)

    def sx(a: int) -> float:
        return (
            left + (a - 1) / span_x * (width - left - right)
            if max_x > 1
            else left + (width - left - right) / 2
        )

    def sy(v: float) -> float:
        return top + (1 - v / max_y) * (height - top - bottom)

    grid = []
    for i in range(5):
        v = max_y * i / 4
        grid.append(
            Markup(
                f'<line class="grid" x1="{left}" x2="{width - right}"'
                f' y1="{sy(v):.1f}" y2="{sy(v):.1f}"/>'
                f'<text class="tick" x="{left - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">'
                f"{v:.2f}</text>"
            )
        )
    for a in range(1, max_x + 1):
        grid.append(
            Markup(
                f'<text class="tick" x="{sx(a):.1f}" y="{height - 14}" text-anchor="middle">'
                f"{a}</text>"
            )
        )
    lines = []
    for i, (node, points) in enumerate(series.items()):
        color = _PALETTE[i % len(_PALETTE)]
        coords = " ".join(f"{sx(a):.1f},{sy(v):.1f}" for a, v in points)
        dots = "".join(f'<circle cx="{sx(a):.1f}" cy="{sy(v):.1f}" r="3.5"/>' for a, v in points)
        lines.append(
            Markup(
                f'<g class="series" data-node="{esc(node)}" style="stroke:{color};fill:{color}">'
                f'<polyline points="{coords}" fill="none"/>{dots}'
                f'<text class="legend-label" x="{width - right + 12}" y="{top + 14 + i * 16}"'
                f' style="stroke:none">{esc(cut(node, 18))}</text></g>'
            )
        )
    eps_line = (
        Markup(
            f'<line class="epsilon" x1="{left}" x2="{width - right}"'
            f' y1="{sy(epsilon):.1f}" y2="{sy(epsilon):.1f}"/>'
            f'<text class="epsilon-label" x="{width - right - 4}" y="{sy(epsilon) - 5:.1f}"'
            f' text-anchor="end">ε {epsilon:g}</text>'
        )
        if epsilon is not None and epsilon <= max_y
        else Markup("")
    )
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        ' role="img" aria-label="V(x) per attempt">'
        f"{join(grid)}{eps_line}{join(lines)}"
        f'<text class="axis" x="{(left + width - right) / 2}" y="{height - 1}"'
        ' text-anchor="middle">attempt</text>'
        f'<text class="axis" x="8" y="{top - 12}">V(x)</text></svg>'
    )


def calls(
    totals: Row,
    rows: Sequence[Row],
    *,
    page: int,
    pages: int,
    base: str,
    tier: str | None,
    node: str | None,
) -> Markup:
    stats = Markup(
        '<div class="stats">'
        f'<div><b data-stat="requests">{totals["requests"]}</b><span>requests</span></div>'
        f'<div><b data-stat="input_tokens">{totals["input_tokens"]:,}</b><span>tokens in</span>'
        "</div>"
        f'<div><b data-stat="output_tokens">{totals["output_tokens"]:,}</b><span>tokens out</span>'
        "</div>"
        f'<div><b data-stat="cost">{money(totals["cost_usd"])}</b><span>cost</span></div>'
        f'<div><b data-stat="latency">{float(totals["latency_s"]):.1f}s</b><span>'
        "total latency</span></div>"
        f"<div><b>{float(totals['slowest_s']):.2f}s</b><span>slowest</span></div>"
        f"<div><b>{totals['failed']}</b><span>failed</span></div></div>"
    )
    body = join(
        Markup(
            f'<tr data-call="{c["id"]}" class="{"" if c["ok"] else "failed"}">'
            f'<td class="num">{c["id"]}</td><td>{esc(when(c["at"]))[11:]}</td><td>'
            f"{esc(c['tier'])}</td>"
            f"<td>{esc(c['model'])}</td><td><code>{esc(c.get('node_id') or NONE)}</code></td>"
            f'<td class="num">{esc(c.get("attempt") or NONE)}</td>'
            f'<td class="num">{c["input_tokens"]:,}</td><td class="num">{c["output_tokens"]:,}</td>'
            f'<td class="num">{float(c["latency_s"]):.2f}s</td><td class="num">'
            f"{money(c['cost_usd'])}</td>"
            f"<td>{_preview(c, 'prompt', 'prompt_chars')}</td>"
            f"<td>{_preview(c, 'response', 'reply_chars')}"
            f"{_error(c)}</td></tr>"
        )
        for c in rows
    )
    filters = []
    if tier:
        filters.append(f"tier {tier}")
    if node:
        filters.append(f"node {node}")
    shown = (
        Markup(
            f'<p>Showing {esc(", ".join(filters))} · <a href="{esc(base)}/calls">all calls</a></p>'
        )
        if filters
        else Markup("")
    )
    return Markup(
        f"{stats}{shown}"
        f"{_table_or_empty(body, _CALL_COLUMNS, 'calls')}"
        f"{pager(page, pages, base + '/calls', {'tier': tier, 'node': node})}"
    )


def _error(call: Row) -> Markup:
    if not call.get("error"):
        return Markup("")
    return Markup(f'<div class="error">{esc(cut(call["error"], 300))}</div>')


def _empty(text: str) -> Markup:
    return Markup(f'<p class="empty">{esc(text)}</p>')


def _preview(call: Row, key: str, size_key: str) -> Markup:
    text = call.get(key)
    size = call.get(size_key)
    if not text:
        return Markup(
            '<span class="muted">'
            f"{esc(f'{size:,} chars, not stored' if size else 'not stored')}</span>"
        )
    return Markup(
        f'<details class="preview"><summary>{esc(cut(text.replace(chr(10), " "), 60))}</summary>'
        f"<pre>{esc(text)}</pre></details>"
    )


def pager(page: int, pages: int, url: str, params: Mapping[str, Any]) -> Markup:
    if pages <= 1:
        return Markup("")
    keep = {k: v for k, v in params.items() if v}

    def link(n: int, label: str) -> Markup:
        return Markup(
            f'<a href="{esc(url)}?{esc(urlencode({**keep, "page": n}))}">{esc(label)}</a>'
        )

    prev = link(page - 1, "← previous") if page > 1 else Markup("")
    nxt = link(page + 1, "next →") if page < pages else Markup("")
    return Markup(f'<nav class="pager">{prev}<span>page {page} of {pages}</span>{nxt}</nav>')


def sandboxes(rows: Sequence[Row], *, base: str) -> Markup:
    body = join(
        Markup(
            f'<tr data-node="{esc(r["node"])}" data-attempt="{r["attempt"]}">'
            f'<td><a href="{esc(base)}/node/{esc(r["node"])}"><code>{esc(r["node"])}</code></a>'
            "</td>"
            f'<td class="num">{r["attempt"]}</td><td>{badge(r["state"])}</td>'
            f'<td>{esc(r["node_state"])}</td><td class="num">{number(r["v"])}</td>'
            f"<td><code>{esc(r['directory'])}</code>"
            f"{'' if r['exists'] else Markup(' <span class=muted>(removed)</span>')}</td>"
            f"<td>{esc(when(r['at']))}</td></tr>"
        )
        for r in rows
    )
    return Markup(
        "<p>Each attempt runs in its own copy of the workspace under "
        "<code>.keel/sandboxes/</code>; it is <b>merged</b> when its bundle became the node's "
        "commit, <b>active</b> while the node works on it, <b>flushed</b> once thrown away.</p>"
        f"{_table_or_empty(body, _SANDBOX_COLUMNS)}"
    )


def decisions(data: Row, *, base: str) -> Markup:
    def section(title: str, count: int, inner: Markup, open_: bool = True) -> Markup:
        return Markup(
            f'<details class="decision"{" open" if open_ and count else ""}>'
            f'<summary>{esc(title)} <span class="muted">({count})</span></summary>{inner}</details>'
        )

    esc_rows = join(
        Markup(
            f"<tr><td>{esc(when(e['at']))}</td><td><code>{esc(e['node_id'])}</code></td>"
            f"<td>{esc(cut(_report_reason(e['report']), 500))}</td>"
            f'<td><details><summary>report</summary><pre class="json">'
            f"{esc(cut(json.dumps(e['report'], indent=1), 8000))}</pre></details></td></tr>"
        )
        for e in data["escalations"]
    )
    sheaf = join(
        Markup(
            f'<tr><td>{esc(when(s["at"]))}</td><td class="num">{number(s.get("v"))}</td>'
            f'<td class="num">{number(s.get("v_sheaf"))}</td><td>'
            f"{'stable' if s.get('stable') else 'unstable'}</td>"
            "<td>"
            f"{esc(cut(_messages(s.get('evidence')), 500))}</td></tr>"
        )
        for s in data["sheaf"]
    )
    plans = join(
        Markup(
            f'<tr><td>{i + 1}</td><td>{esc(when(p["at"]))}</td><td class="num">{p["nodes"]}</td>'
            f"<td>{join((Markup(f'<code>{esc(n)}</code>') for n in p['ids']), ' ')}</td></tr>"
        )
        for i, p in enumerate(data["plans"])
    )
    approvals = join(
        Markup(
            f"<tr><td>{esc(when(a['at']))}</td><td><code>{esc(a['node_id'])}</code></td>"
            "<td>"
            f"{badge(a['decision'])}</td>"
            f"<td>{esc(a['actor'])}</td><td><code>{esc((a.get('ledger_sha') or '')[:12])}</code>"
            "</td>"
            f"<td>{esc(cut(a.get('note'), 500))}</td></tr>"
        )
        for a in data["approvals"]
    )
    rejections = join(
        Markup(
            f"<tr><td>{esc(when(r['at']))}</td><td>{esc(r['type'])}</td><td><code>"
            f"{esc(r.get('node'))}</code></td>"
            f"<td>{esc(cut(r.get('feedback') or r.get('reason') or '', 600))}</td></tr>"
        )
        for r in data["rejections"]
    )
    verifications = join(
        Markup(
            f"<tr><td>{esc(when(v['at']))}</td><td><code>{esc(v.get('node'))}</code></td>"
            f'<td class="num">{esc(v.get("attempt"))}</td><td class="num">{number(v.get("v"))}</td>'
            f"<td>{'stable' if v.get('stable') else 'unstable'}</td>"
            f"<td>{esc(', '.join(map(str, v.get('degraded') or [])))}</td>"
            f'<td class="num">{len(v.get("evidence") or [])}</td></tr>'
        )
        for v in data["verifications"]
    )
    outcomes = join(
        Markup(
            f"<tr><td>{esc(when(o['at']))}</td><td>{esc(o['type'])}</td><td><code>"
            f"{esc(o.get('node') or '')}</code></td>"
            "<td>"
            f"{esc(cut(o.get('reason') or o.get('message') or o.get('outcome') or '', 600))}</td>"
            "</tr>"
        )
        for o in data["outcomes"]
    )
    return Markup(
        section(
            "Escalations",
            len(data["escalations"]),
            _table_or_empty(esc_rows, ("At", "Node", "Why", "Report")),
        )
        + section(
            "Sheaf checks",
            len(data["sheaf"]),
            _table_or_empty(sheaf, ("At", "V(x)", "V_sheaf", "Result", "Evidence")),
        )
        + section(
            "Plan revisions",
            len(data["plans"]),
            _table_or_empty(plans, ("#", "At", "Nodes", "Ids")),
        )
        + section(
            "Approvals and rejections",
            len(data["approvals"]),
            _table_or_empty(approvals, ("At", "Node", "Decision", "Who", "Commit", "Feedback")),
        )
        + section(
            "Reviewer feedback and refused commits",
            len(data["rejections"]),
            _table_or_empty(rejections, ("At", "Kind", "Node", "Feedback or reason")),
        )
        + section(
            "Verification results",
            len(data["verifications"]),
            _table_or_empty(
                verifications, ("At", "Node", "Attempt", "V(x)", "Result", "Degraded", "Residuals")
            ),
            open_=False,
        )
        + section(
            "Failures and outcome",
            len(data["outcomes"]),
            _table_or_empty(outcomes, ("At", "Kind", "Node", "Detail")),
        )
    )


def _messages(items: Any) -> str:
    if not isinstance(items, list):
        return ""
    return "; ".join(str(i.get("message", "")) for i in items if isinstance(i, dict))


def _report_reason(report: Any) -> str:
    if isinstance(report, dict):
        return str(report.get("reason") or report.get("summary") or report.get("analysis") or "")
    return str(report)


def ledger(entries: Sequence[Row] | None, *, workspace: str, problem: str = "") -> Markup:
    if entries is None:
        return Markup(
            '<p class="empty">'
            f"{esc(problem or 'This workspace is not a git repository: no ledger.')}</p>"
        )
    if not entries:
        return Markup('<p class="empty">No commit of this session in the ledger (yet).</p>')
    body = join(
        Markup(
            f'<tr data-sha="{esc(e["sha"])}"><td><code>{esc(e["sha"][:12])}</code></td>'
            f"<td>{esc(when(e['timestamp']))}</td><td>{esc(e['title'])}</td>"
            f"<td><code>{esc(e['node'])}</code></td>"
            f'<td class="trailers"><div>Keel-Session: {esc(e["session"])}</div><div>'
            f"Keel-Node: {esc(e['node'])}</div>"
            f"<div>Keel-Bundle: {esc(e['bundle'])}</div><div>Keel-Energy: {esc(e['energy'])}</div>"
            f"<div>Keel-Approved-By: {esc(e['approved_by'])}</div></td>"
            f"<td>{join((Markup(f'<code>{esc(f)}</code>') for f in e['files']), ' ')}</td>"
            '<td><code class="command">'
            f"keel ledger rollback {esc(e['sha'][:12])} -w {esc(shell_quote(workspace))}</code>"
            "</td></tr>"
        )
        for e in entries
    )
    return Markup(
        "<p>One commit per approved bundle, with its trailers. A rollback is a new commit that "
        "reverts one (run the command in a terminal).</p>"
        f"{_table_or_empty(body, _LEDGER_COLUMNS, 'ledger')}"
    )


def shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
