"""The dashboard's two drawings, as inline SVG built on the server: the plan as a graph
(columns by dependency depth, cards coloured by node state) and the convergence of V(x) per
attempt against epsilon. No script draws anything, so a page is complete as served."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from keel.dashboard.render import Markup, badge, cut, esc, join

Row = dict[str, Any]

_PALETTE = ("#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626")


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


#: The chart's y axis reaches at least this high, so a flat line at 0 still has a scale.
_LOWEST_TOP = 0.1


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
    highest = max(v for points in series.values() for _, v in points)
    max_y = max(highest, (epsilon or 0) * 2, _LOWEST_TOP)
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
