"""``keel sessions``: the dashboard's overview on a terminal (every workspace's sessions).

Synchronous and read-only like :mod:`keel.dashboard.queries` (the CLI runs it in a thread);
nothing here prints: the CLI prints what :func:`format_sessions` returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from keel.dashboard import queries
from keel.dashboard.queries import Reader, StoreUnavailable

Row = dict[str, Any]


def list_sessions(
    workspaces: Sequence[Path],
    reader: Reader,
    *,
    limit: int = 50,
    status: str | None = None,
) -> tuple[list[Row], list[str]]:
    """The newest ``limit`` sessions across ``workspaces`` and a line per store that could
    not be read (missing, damaged, busy)."""
    rows: list[Row] = []
    problems: list[str] = []
    for workspace in workspaces:
        try:
            with queries.reading(queries.store_file(workspace)) as conn:
                found = queries.session_list(conn, reader, limit=limit, status=status)
        except StoreUnavailable as err:
            problems.append(str(err))
            continue
        rows += [{"workspace": str(workspace), **r} for r in found]
    rows.sort(key=lambda r: str(r["started_at"]), reverse=True)
    return rows[:limit], problems


def session_json(row: Row) -> Row:
    keys = (
        "workspace",
        "id",
        "status",
        "task",
        "nodes",
        "committed",
        "calls",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "max_cost",
        "max_steps",
        "started_at",
        "finished_at",
        "duration_s",
        "reason",
    )
    return {key: row.get(key) for key in keys}


def format_sessions(rows: Sequence[Row], *, show_workspace: bool) -> str:
    """A fixed-width table: id, status, nodes, cost, start, duration, task (and workspace)."""
    if not rows:
        return "(no sessions)"
    header = ["ID", "STATUS", "NODES", "COST", "STARTED", "DURATION"]
    if show_workspace:
        header.append("WORKSPACE")
    header.append("TASK")
    table = [header]
    for r in rows:
        line = [
            str(r["id"]),
            str(r["status"]),
            f"{r['committed']}/{r['nodes']}",
            f"${float(r['cost_usd']):.4f}",
            str(r["started_at"] or "")[:19].replace("T", " "),
            _duration(r.get("duration_s")),
        ]
        if show_workspace:
            line.append(Path(str(r["workspace"])).name)
        task = " ".join(str(r["task"]).split())
        line.append(task if len(task) <= 70 else task[:69] + "…")
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        + "  "
        + row[-1]
        for row in table
    )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
