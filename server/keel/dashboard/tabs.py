"""The content of each session tab (and a node's detail) as HTML, from the rows of
:mod:`keel.dashboard.queries`; every value passes through :func:`keel.dashboard.render.esc`."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from keel.dashboard.charts import convergence_chart
from keel.dashboard.render import (
    NONE,
    Markup,
    badge,
    cut,
    empty,
    esc,
    join,
    money,
    number,
    table_or_empty,
    when,
)

Row = dict[str, Any]

_CALL_COLUMNS: tuple[str, ...] = ("#", "At", "Tier", "Model", "Node", "Att.", "In", "Out")
_CALL_COLUMNS += ("Latency", "Cost", "Prompt", "Reply")
_SANDBOX_COLUMNS = ("Node", "Attempt", "Sandbox", "Node state", "V(x)", "Directory", "At")
_LEDGER_COLUMNS = ("Commit", "At", "Title", "Node", "Trailers", "Files", "Roll back")


def node_detail(detail: Row, *, base: str) -> Markup:
    node = detail["node"]
    attempts = []
    earlier: dict[str, str] = {}  # path -> the content an earlier attempt wrote
    last = len(detail["attempts"]) - 1
    for i, a in enumerate(detail["attempts"]):
        e = a["energy"] if isinstance(a["energy"], dict) else {}
        comps = join(
            Markup(f'<td class="num">{number(e.get(k))}</td>')
            for k in ("v_syn", "v_str", "v_log", "v_boot", "v_sheaf", "v")
        )
        attempts.append(
            Markup(
                f'<details class="attempt"{" open" if i == last else ""}>'
                f"<summary>Attempt {esc(a['attempt'])} · "
                f"V(x) = {number(e.get('v'))} · {'stable' if a['stable'] else 'unstable'} · "
                f"{esc(when(a['at']))}</summary>"
                '<table class="energy"><thead><tr><th>V_syn</th><th>V_str</th><th>V_log</th>'
                f"<th>V_boot</th><th>V_sheaf</th><th>V(x)</th></tr></thead><tbody><tr>{comps}</tr>"
                f"</tbody></table><h4>Bundle</h4>{bundle(a.get('bundle'), earlier)}"
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
        f"{join(attempts) or empty('No attempt yet.')}"
        "<h3>State changes</h3><table><thead><tr><th>At</th><th>State</th><th>Detail</th></tr>"
        f"</thead><tbody>{transitions}</tbody></table>"
        "<h3>Approvals</h3>"
        f"{table_or_empty(approvals, ('At', 'Decision', 'Who', 'Commit', 'Feedback'))}"
        f"<h3>Escalations</h3>{escalations or empty('None.')}</section>"
    )


def bundle(value: Any, earlier: dict[str, str] | None = None) -> Markup:
    """A bundle's writes, diffs (patch), deletes and commands. A file an earlier attempt also
    wrote (``earlier``: path -> content, updated here) is shown as the change
    since then, its whole content a click away; a new file as added lines."""
    if not isinstance(value, dict):
        return Markup('<p class="empty">No bundle (the reply could not be used).</p>')
    earlier = {} if earlier is None else earlier
    parts = []
    for w in value.get("writes") or []:
        if isinstance(w, dict):
            parts.append(_write(str(w.get("path")), str(w.get("content") or ""), earlier))
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


def _write(path: str, content: str, earlier: dict[str, str]) -> Markup:
    before = earlier.get(path)
    earlier[path] = content
    head = f'<div class="file"><div class="path">write <code>{esc(path)}</code>'
    if before is None:
        return Markup(f'{head}</div><pre class="diff add">{esc(cut(content, 20000))}</pre></div>')
    change = "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            content.splitlines(keepends=True),
            "before",
            "after",
        )
    )
    shown = diff_lines(cut(change, 20000)) if change else Markup("(unchanged)")
    return Markup(
        f'{head} <span class="muted">changes since the previous bundle</span></div>'
        f'<pre class="diff">{shown}</pre>'
        f'<details class="whole"><summary>whole file</summary>'
        f'<pre class="diff add">{esc(cut(content, 20000))}</pre></details></div>'
    )


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
                '<td class="message">'
                f"{esc(cut(item.get('message'), 2000))}"
                f"{' (already failing)' if item.get('baseline') else ''}</td></tr>"
            )
        )
    return table_or_empty(join(rows), ("Component", "Source", "Where", "Magnitude", "Message"))


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
        f"{table_or_empty(body, _CALL_COLUMNS, 'calls')}"
        f"{pager(page, pages, base + '/calls', {'tier': tier, 'node': node})}"
    )


def _error(call: Row) -> Markup:
    if not call.get("error"):
        return Markup("")
    return Markup(f'<div class="error">{esc(cut(call["error"], 300))}</div>')


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
        f"{table_or_empty(body, _SANDBOX_COLUMNS)}"
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
            table_or_empty(esc_rows, ("At", "Node", "Why", "Report")),
        )
        + section(
            "Sheaf checks",
            len(data["sheaf"]),
            table_or_empty(sheaf, ("At", "V(x)", "V_sheaf", "Result", "Evidence")),
        )
        + section(
            "Plan revisions",
            len(data["plans"]),
            table_or_empty(plans, ("#", "At", "Nodes", "Ids")),
        )
        + section(
            "Approvals and rejections",
            len(data["approvals"]),
            table_or_empty(approvals, ("At", "Node", "Decision", "Who", "Commit", "Feedback")),
        )
        + section(
            "Reviewer feedback and refused commits",
            len(data["rejections"]),
            table_or_empty(rejections, ("At", "Kind", "Node", "Feedback or reason")),
        )
        + section(
            "Verification results",
            len(data["verifications"]),
            table_or_empty(
                verifications, ("At", "Node", "Attempt", "V(x)", "Result", "Degraded", "Residuals")
            ),
            open_=False,
        )
        + section(
            "Failures and outcome",
            len(data["outcomes"]),
            table_or_empty(outcomes, ("At", "Kind", "Node", "Detail")),
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
        f"{table_or_empty(body, _LEDGER_COLUMNS, 'ledger')}"
    )


def shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
