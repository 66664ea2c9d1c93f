"""``keel status`` and ``keel logs``: what the session store says about a session, as data or text.

Why a module apart from the CLI: the same reports serve the terminal, ``--json`` and (later)
the dashboard, and they are easiest to test as plain functions from store records to data and
from data to text. Nothing here prints; the CLI prints what these functions return.

Why everything passes through :func:`redact` although the store redacts every record before
writing it: the store scrubbed the secrets of the session's environment, and the reader's may
hold others (a key exported since, a store written by an older Keel). So every string a report
returns is scrubbed again of the credentials in the environment and of key-shaped strings.

Reading never creates anything: a workspace without ``.keel/keel.db`` is an error, not a new
store, and a directory that is not a git repository is never made one.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from keel.engine import events as ev
from keel.engine.models import NodeState
from keel.engine.ports import ConfigError
from keel.engine.records import (
    ApprovalRecord,
    AttemptRecord,
    EscalationRecord,
    EventRecord,
    ModelCall,
    NodeRecord,
    PlanRecord,
    SessionRecord,
    StepRecord,
)
from keel.engine.redaction import Redactor, redact, secrets_in
from keel.ledger import GitLedger, git_command, git_environment
from keel.liveness import run_alive
from keel.store import SqliteStore, store_path

STATES = tuple(state.value for state in NodeState)
COMPONENTS = ("v_syn", "v_str", "v_log", "v_boot", "v_sheaf", "v")
#: The events ``keel logs`` reads: session-level stops (errors) and checks (tools).
_LOGGED = frozenset(
    {
        ev.EventKind.BUDGET_EXCEEDED,
        ev.EventKind.PLAN_FAILED,
        ev.EventKind.NODE_FAILED,
        ev.EventKind.VERIFICATION,
    }
)
_INVALID_REPLY = "the reply is not a valid"

Row = dict[str, Any]


# --------------------------------------------------------------------------- opening


async def open_store(workspace: Path) -> SqliteStore:
    """The workspace's store, refusing to create one (a report never writes a new store)."""
    path = store_path(workspace)
    if not path.is_file():
        raise ConfigError(f"no Keel session in {workspace} (no {path.relative_to(workspace)})")
    return await SqliteStore.open(path)


async def find_session(store: SqliteStore, session_id: str | None) -> SessionRecord:
    """The named session, or the latest one."""
    chosen = session_id or await store.latest_session_id()
    session = await store.session(chosen).record() if chosen else None
    if session is None:
        raise ConfigError(
            f"no session {session_id} in this workspace"
            if session_id
            else "no session in this workspace yet"
        )
    return session


async def ledger_entries(workspace: Path, session_id: str) -> list[Row] | None:
    """The session's ledger entries read from git, or None when not in a repository."""
    probe = await asyncio.to_thread(
        subprocess.run,
        git_command("-C", str(workspace), "rev-parse", "--is-inside-work-tree"),
        capture_output=True,
        env=git_environment(),
        check=False,
    )
    if probe.returncode != 0:
        return None  # never `git init` from a report
    ledger = await GitLedger.open(workspace, create=False)
    entries = await ledger.entries(None)
    return [
        {"sha": e.sha, "node": e.node, "title": e.title, "files": list(e.files)}
        for e in entries
        if e.session == session_id
    ]


# --------------------------------------------------------------------------- secrets


def redact_row(row: Row, redactor: Callable[[str], str] | None = None) -> Row:
    """A report with every string scrubbed (by default of the environment's credentials)."""
    out = redact(row, redactor or default_redactor())
    assert isinstance(out, dict)
    return out


def default_redactor(env: Mapping[str, str] | None = None) -> Redactor:
    return Redactor(secrets_in(os.environ if env is None else env))


# --------------------------------------------------------------------------- status


def pid_alive(pid: int, host: str, since: str | None = None) -> bool:
    """Whether a run's process still exists (see :func:`keel.liveness.run_alive`)."""
    return run_alive(pid, host, since)


async def status_report(
    store: SqliteStore,
    session: SessionRecord,
    *,
    ledger: Sequence[Row] | None = None,
    alive: Callable[[int, str, str | None], bool] = pid_alive,
    redactor: Callable[[str], str] | None = None,
) -> Row:
    """The session summary ``keel status`` shows (JSON-ready, redacted)."""
    sid, records = session.id, store.session(session.id)
    nodes = await records.nodes()
    attempts = await records.attempts()
    escalations = await records.escalations()
    approvals = await records.approvals()
    totals = await records.call_totals()
    runs = [r for r in await records.live_runs() if alive(r.pid, r.host, r.started_at)]
    config = session.config or {}
    spent: Row = {
        "calls": totals.calls,
        "input_tokens": totals.input_tokens,
        "output_tokens": totals.output_tokens,
        "cost_usd": round(float(totals.cost_usd), 6),
        "unpriced": totals.unpriced,
    }
    node_rows = [_node_status(n, attempts, escalations, approvals) for n in nodes]
    report = {
        "session": sid,
        "task": session.task,
        "started_at": session.started_at,
        "finished_at": session.finished_at,
        "outcome": session.outcome,
        "reason": session.reason,
        "running": bool(runs),
        "pids": [r.pid for r in runs],
        "mode": config.get("mode"),
        "epsilon": config.get("epsilon"),
        "sandbox": config.get("sandbox"),
        "counts": _counts(nodes),
        "nodes": node_rows,
        "retries": sum(n["retries"] for n in node_rows),
        "escalations": len(escalations),
        "totals": spent,
        "budget": _budget(config, spent),
        "ledger_entries": None if ledger is None else len(ledger),
        "environment": config.get("environment") or {},
        "baseline": _baseline_summary(await records.events()),
    }
    return redact_row(report, redactor)


def stored_events(stored: Iterable[EventRecord], kinds: Collection[ev.EventKind]) -> list[ev.Event]:
    """The store's events of ``kinds`` as their records."""
    return [ev.parse_event(e.payload) for e in stored if e.type in kinds]


def _baseline_summary(stored: Sequence[EventRecord]) -> Row | None:
    """The session's ``baseline`` event, in short: the commit and what already failed there."""
    found = stored_events(stored, {ev.EventKind.BASELINE})
    if not found or not isinstance(event := found[-1], ev.BaselineEvent):
        return None
    return {
        "head": event.head,
        "reused": event.reused,
        "failing": [
            _locate(item).removesuffix(": ") or _first_line(str(item.get("message", "")), 80)
            for item in event.evidence
        ],
        "degraded": list(event.degraded),
    }


def _counts(nodes: Iterable[NodeRecord]) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for node in nodes:
        counts[node.state] = counts.get(node.state, 0) + 1
    return counts


def _node_status(
    node: NodeRecord,
    attempts: Sequence[AttemptRecord],
    escalations: Sequence[EscalationRecord],
    approvals: Sequence[ApprovalRecord],
) -> Row:
    nid = node.node_id
    mine = [a for a in attempts if a.node_id == nid]
    latest = max(mine, key=lambda a: (a.attempt, a.at)) if mine else None
    energy = latest.energy if latest else None
    shas = [a.ledger_sha for a in approvals if a.node_id == nid and a.ledger_sha]
    last = next((a for a in reversed(approvals) if a.node_id == nid), None)
    refused = last.note if last and last.decision == "refused" and last.actor == "ledger" else None
    return {
        "id": nid,
        "title": node.title,
        "kind": node.kind,
        "state": node.state,
        "attempts": max((a.attempt for a in mine), default=0),
        "retries": max(0, max((a.attempt for a in mine), default=0) - 1),
        "escalations": sum(1 for e in escalations if e.node_id == nid),
        "energy": {key: float(energy.get(key, 0.0)) for key in COMPONENTS} if energy else None,
        "stable": latest.stable if latest else None,
        "ledger": shas[-1] if shas else None,
        "already_failing": sum(
            1 for item in (latest.evidence or [] if latest else []) if item.get("baseline")
        ),
        # why the node waits, when git refused its approved bundle (a hook, signing, a merge)
        "ledger_refused": refused if node.state == "awaiting_approval" else None,
    }


def _budget(config: Mapping[str, Any], spent: Mapping[str, Any]) -> Row:
    max_cost, max_steps = config.get("max_cost"), config.get("max_steps")
    return {
        "max_cost": max_cost,
        "max_steps": max_steps,
        "cost_left": None if max_cost is None else round(max(0.0, max_cost - spent["cost_usd"]), 6),
        "steps_left": None if max_steps is None else max(0, max_steps - spent["calls"]),
    }


def describe_sandbox(sandbox: Mapping[str, Any] | None) -> str:
    """One line: what confined the session's commands (docs/explanation/sandbox.md)."""
    if not sandbox:
        return "unknown (a session from before sandboxing)"
    if sandbox.get("mode") == "off":
        return "OFF: " + str(sandbox.get("warning") or "commands ran unconfined")
    network = "on" if sandbox.get("network") else "off"
    memory = f", memory {sandbox['memory_mb']} MB" if sandbox.get("memory_mb") else ""
    return f"{sandbox.get('mode')}, network {network}{memory}"


def _sandbox_lines(sandbox: Mapping[str, Any] | None) -> list[str]:
    return [f"sandbox  {describe_sandbox(sandbox)}"] if sandbox is not None else []


def format_status(data: Mapping[str, Any]) -> str:
    state = (
        "RUNNING (pid " + ", ".join(map(str, data["pids"])) + ")"
        if data["running"]
        else (data["outcome"] or "stopped before it finished (`keel resume` continues it)")
    )
    counts = "  ".join(f"{k} {v}" for k, v in data["counts"].items() if v)
    t, b = data["totals"], data["budget"]
    lines = [
        f"session  {data['session']}: {data['task']}",
        f"state    {state}" + (f" ({data['reason']})" if data.get("reason") else ""),
        f"nodes    {counts or '(no plan yet)'}",
        *_sandbox_lines(data.get("sandbox")),
        f"         {data['retries']} retries, {data['escalations']} escalations"
        + ("" if data["ledger_entries"] is None else f", {data['ledger_entries']} ledger commits"),
        f"spent    {t['calls']} calls, {t['input_tokens']} in / {t['output_tokens']} out tokens,"
        f" ${t['cost_usd']:.4f}{unpriced_note(t.get('unpriced', 0))}",
        f"budget   {_left(b['cost_left'], b['max_cost'], '$')}; "
        f"{_left(b['steps_left'], b['max_steps'], '')}",
    ]
    lines += _environment_lines(data.get("environment") or {}, data.get("baseline"))
    if data["nodes"]:
        lines.append("")
        lines += [_node_line(node) for node in data["nodes"]]
    return "\n".join(lines)


def _environment_lines(
    environment: Mapping[str, Any], baseline: Mapping[str, Any] | None
) -> list[str]:
    lines = []
    python = environment.get("python")
    if isinstance(python, Mapping):
        missing = "; pytest NOT installed there" if python.get("pytest") is False else ""
        lines.append(
            f"python   {python.get('interpreter')} ({python.get('source')}"
            f"{', ' + str(python['version']) if python.get('version') else ''}){missing}"
        )
    rust = environment.get("rust")
    if isinstance(rust, Mapping):
        lines.append(f"cargo    home {rust.get('cargo_home')}, target {rust.get('target_dir')}")
    if baseline is not None:
        head = str(baseline.get("head") or "")[:12] or "(no commit)"
        failing = list(baseline.get("failing") or [])
        shown = ", ".join(failing[:3]) + (
            f", … {len(failing) - 3} more" if len(failing) > 3 else ""
        )
        what = f"{len(failing)} already failing ({shown})" if failing else "nothing failing"
        extra = " (reused)" if baseline.get("reused") else ""
        if baseline.get("degraded"):
            extra += "; not measured: " + ", ".join(baseline["degraded"])
        lines.append(f"baseline {head}: {what}{extra}")
    return lines


def unpriced_note(count: int) -> str:
    """`` (2 calls unpriced)`` after a cost that leaves out calls of models without a price."""
    if not count:
        return ""
    return f" ({count} call{'s' if count != 1 else ''} unpriced)"


def _left(left: float | int | None, limit: float | int | None, unit: str) -> str:
    if limit is None:
        return f"no {'cost' if unit else 'step'} limit"
    if unit:
        return f"${left:.4f} of ${limit:.4f} left"
    return f"{left} of {limit} model calls left"


def _node_line(node: Mapping[str, Any]) -> str:
    energy = node["energy"]
    if energy:
        parts = " ".join(f"{k[2:]}={energy[k]:.2f}" for k in COMPONENTS[:-1])
        shown = f"V={energy['v']:.3f} [{parts}]"
    else:
        shown = "V=-"
    extra = f" retries {node['retries']}" if node["retries"] else ""
    extra += f" escalated {node['escalations']}x" if node["escalations"] else ""
    extra += f" ({node['already_failing']} already failing)" if node.get("already_failing") else ""
    sha = f" {node['ledger'][:12]}" if node["ledger"] else ""
    line = f"  {node['id']:<12} {node['state']:<18} {shown}{extra}{sha}  {node['title']}"
    if node.get("ledger_refused"):
        line += f"\n  {'':<12} ledger refused: {_first_line(node['ledger_refused'])}"
    return line


# --------------------------------------------------------------------------- logs


async def logs_report(
    store: SqliteStore,
    session: SessionRecord,
    views: Sequence[str],
    node: str | None = None,
    redactor: Callable[[str], str] | None = None,
) -> Row:
    """The requested views of a session's log (redacted); ``node`` keeps that node's records."""
    sid, records = session.id, store.session(session.id)
    calls = [c for c in await records.model_calls() if node is None or c.node_id == node]
    out: Row = {"session": sid, "node": node}
    if "calls" in views:
        out["calls"] = [call_row(call) for call in calls]
    if "stats" in views:
        out["stats"] = call_stats(calls)
    if "errors" in views or "tools" in views:
        attempts = await records.attempts(node)
        events = [
            e
            for e in stored_events(await records.events(), _LOGGED)
            if node is None or e.node_id == node
        ]
        if "errors" in views:
            escalations = [e for e in await records.escalations() if node in (None, e.node_id)]
            out["errors"] = error_rows(calls, attempts, escalations, events)
        if "tools" in views:
            plan = await records.plan()
            out["tools"] = tool_rows(attempts, events, _plan_commands(plan))
            out["explore"] = explore_rows(await records.steps(), node)
    return redact_row(out, redactor)


def call_row(call: ModelCall) -> Row:
    row: Row = {
        "at": call.at,
        "tier": call.tier,
        "model": call.model,
        "node": call.node_id,
        "attempt": call.attempt,
        "schema": call.schema_name,
        "input_tokens": call.input_tokens,
        "output_tokens": call.output_tokens,
        "cost_usd": round(float(call.cost_usd), 6),
        "priced": call.priced,
        "latency_s": round(float(call.latency_s), 3),
        "ok": call.ok,
        "error": call.error,
        # Characters sent and received; stored for every call (None: recorded before sizes).
        "prompt_chars": call.prompt_chars,
        "reply_chars": call.reply_chars,
    }
    # stored only when the session ran with --log-llm
    if call.prompt is not None:
        row["prompt"] = call.prompt
    if call.response is not None:
        row["response"] = call.response
    return row


def call_stats(calls: Sequence[ModelCall]) -> Row:
    """Calls, tokens, cost and latency (mean, p50, max): in total, per tier, per model."""
    return {
        "total": _aggregate(calls),
        "by_tier": {key: _aggregate(group) for key, group in _group(calls, "tier").items()},
        "by_model": {key: _aggregate(group) for key, group in _group(calls, "model").items()},
    }


def _group(calls: Sequence[ModelCall], key: Literal["tier", "model"]) -> dict[str, list[ModelCall]]:
    groups: dict[str, list[ModelCall]] = {}
    for call in calls:
        groups.setdefault(call.tier if key == "tier" else call.model, []).append(call)
    return groups


def _aggregate(calls: Sequence[ModelCall]) -> Row:
    latencies = [float(c.latency_s) for c in calls]
    return {
        "calls": len(calls),
        "failed": sum(1 for c in calls if not c.ok),
        "input_tokens": sum(int(c.input_tokens) for c in calls),
        "output_tokens": sum(int(c.output_tokens) for c in calls),
        "cost_usd": round(sum(float(c.cost_usd) for c in calls), 6),
        "unpriced": sum(1 for c in calls if not c.priced),
        "prompt_chars": sum(int(c.prompt_chars or 0) for c in calls),
        "reply_chars": sum(int(c.reply_chars or 0) for c in calls),
        "latency_s": {
            "mean": round(statistics.fmean(latencies), 3) if latencies else 0.0,
            "p50": round(statistics.median(latencies), 3) if latencies else 0.0,
            "max": round(max(latencies), 3) if latencies else 0.0,
        },
    }


def error_rows(
    calls: Sequence[ModelCall],
    attempts: Sequence[AttemptRecord],
    escalations: Sequence[EscalationRecord],
    events: Sequence[ev.Event],
) -> list[Row]:
    """Failed calls, invalid replies, bad bundles, failed/refused/timed-out commands,
    escalations and session-level stops, in that order (``events`` are their payloads)."""
    rows = [_call_error(call) for call in calls if not call.ok]
    for attempt in attempts:
        for item in attempt.evidence:
            kind = _evidence_error_kind(item)
            if kind:
                rows.append(_evidence_error(kind, attempt, item))
    for escalation in escalations:
        report = escalation.report
        rows.append(
            {
                "kind": "escalation",
                "node": escalation.node_id,
                "attempt": report.get("attempts"),
                "at": escalation.at,
                "message": str(report.get("reason", "")),
                "evidence": [_escalation_evidence(e) for e in report.get("evidence", [])][:10],
            }
        )
    for event in events:
        match event:
            case (
                ev.BudgetExceededEvent(message=message)
                | ev.PlanFailed(reason=message)
                | ev.NodeFailed(reason=message)
            ):
                row = {"kind": event.type.value, "node": event.node_id, "at": event.ts}
                rows.append({**row, "message": message})
    return rows


def _escalation_evidence(item: Mapping[str, Any]) -> str:
    message = str(item.get("message", ""))
    if item.get("baseline"):
        message += f" (already failing at {str(item.get('baseline_at') or 'HEAD')[:12]})"
    return message


def _call_error(call: ModelCall) -> Row:
    # A reply that arrived but failed validation has a latency; a failed request has none.
    invalid = str(call.error or "").startswith(_INVALID_REPLY) or call.latency_s > 0
    return {
        "kind": "invalid_reply" if invalid else "call_failed",
        "node": call.node_id,
        "attempt": call.attempt,
        "at": call.at,
        "tier": call.tier,
        "model": call.model,
        "message": str(call.error or ""),
    }


def _evidence_error_kind(item: Mapping[str, Any]) -> str | None:
    source = item.get("source")
    if source == "bundle":
        return "bad_bundle"
    if source != "command":
        return None
    message = str(item.get("message", ""))
    if message.startswith("not run:"):
        return "command_refused"
    if message == "timed out":
        return "command_timed_out"
    return "command_failed"


def _evidence_error(kind: str, attempt: AttemptRecord, item: Mapping[str, Any]) -> Row:
    row = {
        "kind": kind,
        "node": attempt.node_id,
        "attempt": attempt.attempt,
        "at": attempt.at,
        "message": str(item.get("message", "")),
    }
    for key in ("command", "exit_code", "path"):
        if item.get(key) is not None:
            row[key] = item[key]
    return row


def _plan_commands(plan: PlanRecord | None) -> dict[str, list[str]]:
    nodes = plan.plan.get("nodes", []) if plan else []
    return {str(n["id"]): list(n.get("commands") or []) for n in nodes}


def tool_rows(
    attempts: Sequence[AttemptRecord],
    events: Sequence[ev.Event],
    plan_commands: Mapping[str, list[str]],
) -> list[Row]:
    """Per attempt: the commands run and how they ended, and each sensor's evidence."""
    checks = [e for e in events if isinstance(e, ev.Verification)]
    degraded = {(e.node, e.attempt): list(e.degraded) for e in checks}
    rows = [
        _tool_row(a, plan_commands.get(a.node_id, []), degraded.get((a.node_id, a.attempt)))
        for a in attempts
    ]
    rows += [_sheaf_row(e) for e in checks if e.stage == "sheaf"]
    return rows


def explore_rows(steps: Sequence[StepRecord], node: str | None = None) -> list[Row]:
    """The read-only tool calls of the session (the architect's exploration), in order: the
    tool, its arguments, whether the policy refused it and the result's size; a call that
    never finished (a crash) is listed with ``finished`` false."""
    rows = []
    for step in steps:
        if step.kind != "tool":
            continue
        intent, result = step.intent or {}, step.result or {}
        if node is not None and result.get("node_id") != node:
            continue
        rows.append(
            {
                "step": step.step_id,
                "at": step.intent_at,
                "tool": intent.get("tool"),
                "arguments": intent.get("arguments", {}),
                "finished": bool(step.result),
                "refused": bool(result.get("refused", False)),
                "chars": result.get("chars"),
                "result": _first_line(str(result.get("text", ""))),
            }
        )
    return rows


def _tool_row(attempt: AttemptRecord, node_commands: list[str], degraded: list[str] | None) -> Row:
    bundle = attempt.bundle or {}
    evidence = attempt.evidence
    failed = {str(e.get("command")): e for e in evidence if e.get("source") == "command"}
    commands = [
        _command_row(command, failed.get(command))
        for command in [*node_commands, *(bundle.get("commands") or [])]
    ]
    return {
        "node": attempt.node_id,
        "attempt": attempt.attempt,
        "at": attempt.at,
        "stable": attempt.stable,
        "energy": {key: float(attempt.energy.get(key, 0.0)) for key in COMPONENTS},
        "commands": commands,
        "sensors": _by_source(e for e in evidence if e.get("source") != "command"),
        "degraded": degraded or [],
    }


def _command_row(command: str, failure: Mapping[str, Any] | None) -> Row:
    if failure is None:
        return {"command": command, "ok": True}
    return {
        "command": command,
        "ok": False,
        "exit_code": failure.get("exit_code"),
        "message": str(failure.get("message", "")),
    }


def _by_source(evidence: Iterable[Mapping[str, Any]]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for item in evidence:
        fields = {k: v for k, v in item.items() if k not in ("source", "magnitude")}
        out.setdefault(str(item.get("source")), []).append(fields)
    return out


def _sheaf_row(event: ev.Verification) -> Row:
    energy = event.components()
    return {
        "node": None,
        "attempt": "sheaf",
        "at": event.ts,
        "stable": event.stable,
        "energy": {key: float(energy[key]) for key in COMPONENTS},
        "commands": [],
        "sensors": _by_source(event.evidence),
        "degraded": list(event.degraded),
    }


# --------------------------------------------------------------------------- logs as text


def format_logs(data: Mapping[str, Any]) -> str:
    sections = []
    if "calls" in data:
        sections.append(_format_calls(data["calls"]))
    if "stats" in data:
        sections.append(_format_stats(data["stats"]))
    if "errors" in data:
        sections.append(_format_errors(data["errors"]))
    if "tools" in data:
        sections.append(_format_tools(data["tools"]))
    if data.get("explore"):
        sections.append(_format_explore(data["explore"]))
    title = f"session {data['session']}" + (f", node {data['node']}" if data["node"] else "")
    return "\n\n".join([title, *sections])


def _clock(at: str | None) -> str:
    """``10:15:00.123`` from an ISO timestamp."""
    text = str(at or "")
    return text[11:23] if len(text) >= 23 else text


def _format_calls(calls: Sequence[Mapping[str, Any]]) -> str:
    if not calls:
        return "(no model calls)"
    lines = [
        f"{'time':<12} {'tier':<10} {'model':<24} {'node':<10} att {'in':>7} {'out':>6}"
        f" {'prompt':>7} {'reply':>6} {'cost':>9} {'latency':>8}  result"
    ]
    for c in calls:
        result = "ok" if c["ok"] else f"ERROR {_first_line(c['error'] or '')}"
        if not c["priced"]:
            result += " (unpriced)"
        sizes = f"{_size(c.get('prompt_chars')):>7} {_size(c.get('reply_chars')):>6}"
        lines.append(
            f"{_clock(c['at']):<12} {c['tier']:<10} {_cut(c['model'], 24):<24} "
            f"{c['node'] or '-':<10} {c['attempt'] or '-':>3} {c['input_tokens']:>7} "
            f"{c['output_tokens']:>6} {sizes} {c['cost_usd']:>9.4f} {c['latency_s']:>7.2f}s"
            f"  {result}"
        )
        for key in ("prompt", "response"):
            if key in c:
                lines.append(f"  --- {key} ---")
                lines.extend("  " + line for line in str(c[key]).splitlines())
    return "\n".join(lines)


def _size(chars: int | None) -> str:
    """Characters as ``812`` or ``12.3k``; ``-`` when unknown."""
    if chars is None:
        return "-"
    return str(chars) if chars < 10_000 else f"{chars / 1000:.1f}k"


def _format_stats(stats: Mapping[str, Any]) -> str:
    header = (
        f"{'':<28} {'calls':>5} {'failed':>6} {'in':>8} {'out':>7} {'prompt':>7} {'reply':>7}"
        f" {'cost':>9} {'mean':>7} {'p50':>7} {'max':>7}"
    )
    lines = [header, _stats_line("total", stats["total"])]
    for title, key in (("tier", "by_tier"), ("model", "by_model")):
        lines += [_stats_line(f"{title} {name}", row) for name, row in stats[key].items()]
    return "\n".join(lines)


def _stats_line(label: str, row: Mapping[str, Any]) -> str:
    lat = row["latency_s"]
    return (
        f"{_cut(label, 28):<28} {row['calls']:>5} {row['failed']:>6} {row['input_tokens']:>8}"
        f" {row['output_tokens']:>7} {_size(row.get('prompt_chars')):>7}"
        f" {_size(row.get('reply_chars')):>7} {row['cost_usd']:>9.4f} {lat['mean']:>6.2f}s"
        f" {lat['p50']:>6.2f}s {lat['max']:>6.2f}s{unpriced_note(row.get('unpriced', 0))}"
    )


def _format_errors(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "(no errors)"
    lines = []
    for row in rows:
        where = row.get("node") or "-"
        if row.get("attempt") is not None:
            where += f"#{row['attempt']}"
        command = f" `{row['command']}` exit {row.get('exit_code')}" if row.get("command") else ""
        lines.append(
            f"{_clock(row.get('at')):<12} {row['kind']:<18} {where:<12}{command} "
            f"{_first_line(row['message'])}"
        )
        lines += [f"    {_first_line(item)}" for item in row.get("evidence", [])[:3]]
    return "\n".join(lines)


def _format_tools(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "(no verified attempts)"
    lines = []
    for row in rows:
        who = row["node"] or "sheaf"
        attempt = "" if row["attempt"] == "sheaf" else f" attempt {row['attempt']}"
        verdict = "stable" if row["stable"] else "unstable"
        lines.append(f"{who}{attempt}: V={row['energy']['v']:.3f} {verdict}")
        for command in row["commands"]:
            status = "ok" if command["ok"] else f"exit {command.get('exit_code')}"
            extra = "" if command["ok"] else f" {_first_line(command.get('message', ''))}"
            lines.append(f"  command `{command['command']}`: {status}{extra}")
        for source, items in row["sensors"].items():
            for item in items[:8]:
                lines.append(f"  {source}: {_locate(item)}{_first_line(str(item.get('message')))}")
        if row["degraded"]:
            lines.append(f"  degraded: {', '.join(row['degraded'])}")
    return "\n".join(lines)


def _format_explore(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = [f"exploration: {len(rows)} tool call(s)"]
    for row in rows:
        arguments = ", ".join(f"{k}={json.dumps(v)}" for k, v in row["arguments"].items())
        if not row["finished"]:
            outcome = "did not finish"
        elif row["refused"]:
            outcome = row["result"]
        else:
            outcome = f"{row['chars']} chars"
        lines.append(f"  {_clock(row['at'])} {row['tool']}({arguments}): {outcome}")
    return "\n".join(lines)


def _locate(item: Mapping[str, Any]) -> str:
    if item.get("test_id"):
        return f"{item['test_id']}: "
    if item.get("path"):
        line = f":{item['line']}" if item.get("line") is not None else ""
        return f"{item['path']}{line}: "
    return ""


def _first_line(text: str, limit: int = 140) -> str:
    stripped = str(text).strip()
    line = stripped.splitlines()[0] if stripped else ""
    return _cut(line, limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
