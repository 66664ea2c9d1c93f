"""The ``keel`` command line: argument parsing and terminal output, no logic of its own.

Exit status (docs/reference/cli.md#exit-status): 0 only when every node converged and the
sheaf check passed; 1 for a partial or failed session; 2 for bad usage or configuration; 3
when a budget stopped the session; 130 when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keel import __version__
from keel.bundles.paths import escape

# Each command imports what it uses inside its function, so `keel --help`, `status`, `logs`,
# `ledger` and `abort` never load the language server's libraries, the model SDKs, the
# plugins or numpy; tests/integration/test_startup_imports.py pins that.
if TYPE_CHECKING:
    from aiohttp import web

    from keel.engine import events as ev
    from keel.engine.models import LedgerEntry
    from keel.engine.modes import Explored
    from keel.engine.records import SessionRecord
    from keel.engine.session import SessionResult
    from keel.store import SqliteStore

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUDGET, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

# Only these may create the -w directory (and then a repository and a store); every other
# command reads an existing workspace and leaves a missing one missing.
CREATING_COMMANDS = frozenset({"agent", "demo"})

DEMO_TASK = (
    "Create a Python calculator package with add, subtract, multiply, divide operations. "
    "Include type hints, a pyproject.toml with build-system, and comprehensive pytest tests."
)


def visible(text: str, keep: str = "\n\t") -> str:
    """``text`` safe for a terminal: control characters (titles, paths, git subjects, model
    output) printed as escapes such as ``\\x1b``, never acted on. JSON output needs none."""
    return escape(text, keep)


class JsonSink:
    """``--json``: one event object per line on stdout and nothing else there."""

    def emit(self, event: ev.Event) -> None:
        sys.stdout.write(json.dumps(event.to_json(), default=str) + "\n")
        sys.stdout.flush()


class TerminalSink:
    """Human-readable progress lines."""

    def emit(self, event: ev.Event) -> None:
        line = describe_event(event)
        if line:
            print(visible(line), flush=True)


def _energy(event: ev.Verification) -> str:
    parts = " ".join(
        f"{name}={value:.2f}"
        for name, value in (
            ("syn", event.v_syn),
            ("str", event.v_str),
            ("log", event.v_log),
            ("boot", event.v_boot),
            ("sheaf", event.v_sheaf),
        )
    )
    return f"V(x)={event.v:.3f} [{parts}]"


def _first_line(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _environment_line(environment: Mapping[str, object]) -> str:
    python = environment.get("python")
    if not isinstance(python, Mapping):
        return ""
    missing = "; pytest NOT installed there" if python.get("pytest") is False else ""
    return f"\n[python] {python.get('interpreter')} ({python.get('source')}){missing}"


def _baseline_line(event: ev.BaselineEvent) -> str:
    if not event.head:
        return "[baseline] no commit yet: nothing to compare with"
    where = [str(e.get("test_id") or e.get("path") or e.get("source")) for e in event.evidence]
    shown = ", ".join(where[:3]) + (f", … {len(where) - 3} more" if len(where) > 3 else "")
    what = f"{len(where)} already failing ({shown})" if where else "nothing failing"
    reused = " (reused)" if event.reused else ""
    return f"[baseline] {event.head[:12]}: {what}{reused}"


def _evidence_line(item: Mapping[str, object]) -> str:
    where = item.get("test_id") or item.get("path") or item.get("command") or ""
    line = f"    {item.get('source')}: {where} {_first_line(str(item.get('message', '')))}"
    if item.get("baseline"):
        line = line.rstrip() + f" (already failing at {str(item.get('baseline_at'))[:12]})"
    return line.rstrip()


def _verification_lines(event: ev.Verification) -> str:
    verdict = "STABLE" if event.stable else "unstable"
    lines = [f"[{event.node or 'sheaf'}] {_energy(event)} eps={event.epsilon} -> {verdict}"]
    lines += [_evidence_line(e) for e in event.evidence[:8]]
    if event.degraded:
        lines.append(f"    degraded sensors: {', '.join(event.degraded)}")
    return "\n".join(lines)


def _plan_lines(event: ev.PlanReady) -> str:
    lines = [f"[plan] {len(event.nodes)} nodes"]
    for n in event.nodes:
        deps = f" <- {', '.join(n.depends_on)}" if n.depends_on else ""
        owns = ", ".join(n.owns) or "-"
        lines.append(f"  {n.id}: {n.title} ({n.kind}) owns {owns}{deps}")
    return "\n".join(lines)


def _finished_line(event: ev.SessionFinished) -> str:
    from keel import reports

    t = event.totals
    return (
        f"[done] {event.outcome}"
        f"{(' (' + event.reason + ')') if event.reason else ''}: "
        f"{t.committed}/{t.nodes} nodes committed, {t.calls} model calls, "
        f"{t.input_tokens}+{t.output_tokens} tokens, ${t.cost_usd:.4f}"
        f"{reports.unpriced_note(t.unpriced)}, {t.wall_time_s}s"
    )


def describe_event(event: ev.Event) -> str | None:
    """The progress line(s) ``keel agent`` prints for ``event``; None for a silent one."""
    from keel import reports
    from keel.engine import events as ev

    match event:
        case ev.SessionStarted():
            return (
                f"[session] {event.session}: {event.task}\n[models] "
                + ", ".join(f"{tier}={model}" for tier, model in event.models.items())
                + f"\n[sandbox] {reports.describe_sandbox(event.sandbox)}"
                + _environment_line(event.environment)
            )
        case ev.BaselineEvent():
            return _baseline_line(event)
        case ev.Explore():
            arguments = ", ".join(f"{k}={json.dumps(v)}" for k, v in event.arguments.items())
            outcome = "refused" if event.refused else f"{event.chars} chars"
            return f"[explore] {event.tool}({arguments[:120]}): {outcome}"
        case ev.PlanInvalid():
            return f"[plan] attempt {event.attempt} invalid: " + "; ".join(event.errors)
        case ev.PlanReady():
            return _plan_lines(event)
        case ev.NodeStarted():
            return f"[{event.node}] started: {event.title}"
        case ev.BundleGenerated():
            extra = f"; problems: {'; '.join(event.problems)}" if event.problems else ""
            files = ", ".join(event.files) or "(no files)"
            return f"[{event.node}] attempt {event.attempt} bundle: {files}{extra}"
        case ev.Verification():
            return _verification_lines(event)
        case ev.NodeRetrying():
            return f"[{event.node}] retrying (attempt {event.attempt}) with the evidence"
        case ev.AwaitingApproval():
            return f"[{event.node}] awaiting approval (complexity {event.complexity})"
        case ev.NodeCommitted():
            return f"[{event.node}] committed {event.ledger[:12]}"
        case ev.HunksVerified():
            verdict = "stable" if event.stable else "NOT stable"
            hunks = ", ".join(event.hunks)
            return f"[{event.node}] hunks {hunks} alone: V(x)={event.v:.3f}, {verdict}"
        case ev.BundlePartiallyCommitted():
            return (
                f"[{event.node}] committed {event.ledger[:12]} ({', '.join(event.files)}); "
                "the rest is verified again"
            )
        case ev.HunksRejected():
            return f"[{event.node}] rejected hunks {', '.join(event.hunks)}; {event.remaining} left"
        case ev.NodeEscalated():
            return f"[{event.node}] ESCALATED: {event.reason}"
        case ev.NodeFailed() | ev.NodeWaiting():
            return f"[{event.node}] {event.reason}"
        case ev.PlanFailed():
            return f"[{event.type}] {event.reason}"
        case ev.WarningEvent():
            return f"[{event.type}] {event.message}"
        case ev.BudgetExceededEvent():
            return f"[budget] {event.message}"
        case ev.SessionFinished():
            return _finished_line(event)
    return None


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    names = (
        "model",
        "architect_model",
        "actuator_model",
        "verifier_model",
        "speculator_model",
        "mode",
        "complexity_k",
        "energy_weights",
        "stability_threshold",
        "max_cost",
        "max_steps",
        "max_attempts",
        "defer_tests",
        "log_llm",
    )
    return {name: getattr(args, name, None) for name in names}


def exit_status(result: SessionResult) -> int:
    if result.outcome == "aborted":
        return EXIT_INTERRUPTED
    if result.budget_stop:
        return EXIT_BUDGET
    return EXIT_OK if result.outcome == "success" else EXIT_FAILED


@contextlib.contextmanager
def abort_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM (``keel abort``) cancel the session, which then ends ``aborted``."""
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    try:
        yield
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def run_agent(
    args: argparse.Namespace,
    task: str,
    flags: Mapping[str, Any],
    *,
    resume: str | None = None,
    session_config: Mapping[str, Any] | None = None,
) -> int:
    from keel.app import open_engine
    from keel.config import load_config
    from keel.terminal import TerminalApprover

    config = load_config(args.workspace, flags=flags, session=session_config)
    args.workspace.mkdir(parents=True, exist_ok=True)  # after validation: bad flags create nothing
    sink = JsonSink() if args.json else TerminalSink()
    approver = TerminalApprover(interactive=sys.stdin.isatty() and not args.yes)
    with abort_on_signals():
        async with open_engine(
            args.workspace, task, config, sink=sink, approver=approver, auto_approve=args.yes
        ) as engine:
            result = await engine.run(task, resume, resume=resume is not None)
    if result.reason:  # stderr: stdout stays JSON-only with --json
        print(f"keel: {visible(result.reason)}", file=sys.stderr)
    return exit_status(result)


def _mode_flags(args: argparse.Namespace) -> dict[str, Any]:
    names = ("model", "architect_model", "max_cost", "max_steps")
    return {name: getattr(args, name, None) for name in names}


async def run_plan(args: argparse.Namespace) -> int:
    """``keel plan``: explore and plan like ``keel agent``, print the DAG, write nothing."""
    from keel.app import open_modes
    from keel.config import load_config
    from keel.engine.gateway import BudgetExceeded
    from keel.engine.modes import plan_markdown
    from keel.engine.planning import plan_dict

    config = load_config(args.workspace, flags=_mode_flags(args))

    def invalid(attempt: int, errors: list[str]) -> None:
        print(f"keel: plan attempt {attempt} invalid: " + "; ".join(errors), file=sys.stderr)

    try:
        async with open_modes(args.workspace, config, task=args.task) as modes:
            plan = await modes.plan(args.task, invalid, on_explore=_heard(False))
    except BudgetExceeded as exc:
        print(f"keel: {exc}", file=sys.stderr)
        return EXIT_BUDGET
    if args.json:
        print(json.dumps(plan_dict(plan)))  # the plan exactly; the calls went to stderr
    else:
        print(plan_markdown(args.task, plan))
    return EXIT_OK


def _heard(as_json: bool) -> Callable[[Explored], None]:
    """Prints the architect's tool calls in ``plan``/``explain`` on stderr as they happen
    (except ``explain --json``, whose object lists them; ``plan --json`` prints the plan
    exactly, so its calls stay on stderr)."""

    def heard(call: Explored) -> None:
        if not as_json:
            print(f"keel: explore {call.line()}", file=sys.stderr)

    return heard


async def run_explain(args: argparse.Namespace) -> int:
    """``keel explain``: a read-only answer citing ``path:line``; writes nothing."""
    from keel.app import open_modes
    from keel.config import load_config
    from keel.engine.gateway import BudgetExceeded
    from keel.engine.modes import explanation_markdown

    config = load_config(args.workspace, flags=_mode_flags(args))
    try:
        async with open_modes(args.workspace, config, task=args.question) as modes:
            explained = await modes.explain(args.question, on_explore=_heard(args.json))
    except BudgetExceeded as exc:
        print(f"keel: {exc}", file=sys.stderr)
        return EXIT_BUDGET
    if args.json:
        print(json.dumps(explained.as_dict()))
    else:
        print(explanation_markdown(explained))
    for dropped in explained.dropped:
        print(
            f"keel: dropped citation {dropped.path}:{dropped.line}: {dropped.reason}",
            file=sys.stderr,
        )
    return EXIT_OK


async def run_resume(args: argparse.Namespace) -> int:
    from keel import reports
    from keel.engine.ports import ConfigError

    store = await reports.open_store(args.workspace)
    try:
        session_id = args.session or await store.latest_session_id()
        session = await store.session(session_id).record() if session_id else None
        if session is None:
            raise ConfigError(
                f"no session {args.session} in {args.workspace}"
                if args.session
                else f"no session to resume in {args.workspace}"
            )
        context = await trust_context(store, session)
    finally:
        await store.close()
    print(visible(context), file=sys.stderr if args.json else sys.stdout, flush=True)
    flags = {key: getattr(args, key) for key in ("mode", "complexity_k", "max_cost", "max_steps")}
    return await run_agent(
        args, session.task, flags, resume=session.id, session_config=session.config
    )


async def trust_context(store: SqliteStore, session: SessionRecord) -> str:
    """What a person should know before letting a stored session continue."""
    sid, records = session.id, store.session(session.id)
    nodes = await records.nodes()
    attempts = await records.attempts()
    escalations = await records.escalations()
    latest: dict[str, Mapping[str, float]] = {}
    for attempt in attempts:
        latest[attempt.node_id] = attempt.energy
    retries = sum(1 for a in attempts if a.attempt > 1)
    lines = [
        f"Resuming {sid}: {session.task}",
        f"  started {session.started_at}, last outcome {session.outcome or 'unfinished'}",
        f"  {retries} retries, {len(escalations)} escalations",
    ]
    for node in nodes:
        energy = latest.get(node.node_id) or {}
        v = f"V={energy['v']:.3f}" if "v" in energy else "V=-"
        lines.append(f"  {node.node_id:<12} {node.state:<18} {v}  {node.title}")
    for escalation in escalations:
        report = escalation.report
        lines.append(f"  escalated {escalation.node_id}: {report.get('reason', '')}")
        for item in report.get("evidence", [])[:3]:
            lines.append(f"    {item.get('source')}: {_first_line(str(item.get('message', '')))}")
    return "\n".join(lines)


async def run_abort(args: argparse.Namespace) -> int:
    import signal
    import socket

    from keel import reports

    store = await reports.open_store(args.workspace)
    try:
        session_id = args.session or await store.latest_session_id()
        if session_id is None:
            print("keel: no session in this workspace", file=sys.stderr)
            return EXIT_FAILED
        records = store.session(session_id)
        runs = await records.request_abort()
        signalled = []
        for run in runs:
            if run.host != socket.gethostname():
                continue
            if not reports.pid_alive(run.pid, run.host, run.started_at):
                await records.end_run(run.id)  # it died; its pid may be another's now
                continue
            try:
                os.kill(run.pid, signal.SIGTERM)
                signalled.append(run.pid)
            except ProcessLookupError:
                await records.end_run(run.id)  # it died without saying so
    finally:
        await store.close()
    if args.json:
        print(json.dumps({"session": session_id, "signalled": signalled}))
    elif signalled:
        print(f"abort requested for {session_id} (pid {', '.join(map(str, signalled))})")
    else:
        print(f"no running process for {session_id}; `keel resume` continues it")
    return EXIT_OK if signalled else EXIT_FAILED


async def run_status(args: argparse.Namespace) -> int:
    from keel import reports

    store = await reports.open_store(args.workspace)
    try:
        session = await reports.find_session(store, args.session)
        ledger = await reports.ledger_entries(args.workspace, session.id)
        data = await reports.status_report(store, session, ledger=ledger)
    finally:
        await store.close()
    print(json.dumps(data) if args.json else visible(reports.format_status(data)))
    return EXIT_OK


async def run_logs(args: argparse.Namespace) -> int:
    from keel import reports

    views = [view for view in ("stats", "errors", "tools") if getattr(args, view)] or ["calls"]
    store = await reports.open_store(args.workspace)
    try:
        session = await reports.find_session(store, args.session)
        data = await reports.logs_report(store, session, views, args.node)
    finally:
        await store.close()
    print(json.dumps(data) if args.json else visible(reports.format_logs(data)))
    return EXIT_OK


async def run_replay(args: argparse.Namespace) -> int:
    from keel import replay, reports

    store = await reports.open_store(args.workspace)
    try:
        session = await reports.find_session(store, args.session)
        if args.transcript:
            path = replay.absolute(args.transcript)
            count = await replay.export_transcript(store, session, path)
            done = {"session": session.id, "transcript": str(path), "entries": count}
            print(json.dumps(done) if args.json else f"wrote {count} replies to {path}")
            return EXIT_OK
        target = replay.target_for(args.into, args.workspace, session.id)
        prepared = await replay.prepare(store, session, args.workspace, target)
    finally:
        await store.close()
    print(visible(prepared.describe(session.id)), file=sys.stderr if args.json else sys.stdout)
    args.workspace, args.yes = prepared.workspace, True
    flags = {"model": f"replay:{prepared.transcript}"}
    return await run_agent(args, session.task, flags, session_config=session.config)


def demo_transcript() -> Path:
    return Path(__file__).parent / "demo" / "calculator.jsonl"


async def run_demo(args: argparse.Namespace) -> int:
    import asyncio
    import subprocess

    from keel.app import sandbox_missing
    from keel.config import load_config
    from keel.engine.ports import ConfigError
    from keel.ledger import git_command, git_environment

    workspace = args.workspace
    workspace.mkdir(parents=True, exist_ok=True)
    if any(p.name != ".git" for p in workspace.iterdir()):
        raise ConfigError(
            f"keel demo builds a new project and needs an empty directory; {workspace} "
            "is not empty (use -w DIR)"
        )
    if not args.json:
        print(
            "keel demo: a RECORDED model transcript drives this session (no model is reachable "
            f"offline): {demo_transcript()}\n"
            "Planning, sandboxes, verification (ty, pytest) and the git ledger are real.\n"
            "To use a real model: export OPENAI_API_KEY and run "
            '`keel agent -w DIR --model openai:gpt-4.1 "TASK"`\n'
            "(or anthropic:MODEL, openai-compatible:MODEL with OPENAI_BASE_URL).\n"
        )
    if not (workspace / ".git").exists():
        # A new project gets its own repository, even inside another checkout.
        init = git_command("init", "-q", str(workspace))
        await asyncio.to_thread(subprocess.run, init, env=git_environment(), check=True)
    flags: dict[str, Any] = {"model": f"replay:{demo_transcript()}"}
    config = load_config(workspace, flags=flags)
    if config.sandbox.mode == "auto" and (why := await sandbox_missing(workspace, config)):
        # The demo's code is Keel's own recorded transcript, not a model's: it may run
        # unconfined, so the README's first command works where bubblewrap is not installed.
        print(
            f"keel demo: {why}\nkeel demo: the demo runs Keel's own recorded transcript, so it "
            "runs unconfined here; `keel agent` refuses to run model code without a sandbox.",
            file=sys.stderr,
        )
        flags["sandbox_mode"] = "off"
    args.yes = True
    return await run_agent(args, DEMO_TASK, flags)


def _entry_dict(entry: LedgerEntry) -> dict[str, Any]:
    return {
        key: (list(value) if isinstance(value, tuple) else value)
        for key, value in vars(entry).items()
    }


async def run_ledger(args: argparse.Namespace) -> int:
    from keel.ledger import GitLedger

    # An existing repository only (never ``git init``), and no store.
    ledger = await GitLedger.open(args.workspace, create=False)
    if args.action == "show":
        entry, patch = await ledger.show(_required(args.entry, "show"))
        if args.json:
            print(json.dumps({**_entry_dict(entry), "patch": patch}))
        else:
            print(
                f"{entry.sha}  {visible(entry.title, '')}\nsession {visible(entry.session, '')}"
                f"  node {visible(entry.node, '')}  approved by {visible(entry.approved_by, '')}"
                f"\nenergy  {visible(entry.energy, '')}\n\n{visible(patch)}"
            )
        return EXIT_OK
    if args.action == "rollback":
        sha = await ledger.rollback(_required(args.entry, "rollback"))
        print(json.dumps({"ledgerEntry": sha}) if args.json else f"reverted with {sha}")
        return EXIT_OK
    entries = await ledger.entries(args.recent)
    if args.json:
        print(json.dumps([_entry_dict(e) for e in entries]))
    else:
        for e in entries:
            who = f"{e.node:<10} {e.approved_by:<9}"
            print(visible(f"{e.sha[:12]}  {e.timestamp}  {who} {e.title}  [{e.energy}]", ""))
        if not entries:
            print("(no ledger entries yet)")
    return EXIT_OK


def _required(entry: str | None, action: str) -> str:
    from keel.engine.ports import ConfigError

    if not entry:
        raise ConfigError(
            f"keel ledger {action} needs an ENTRY (a commit sha from keel ledger --recent)"
        )
    return entry


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keel", description="A verified coding agent.")
    parser.add_argument("--version", action="version", version=f"keel {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the language server (stdio by default)")
    transport = serve.add_mutually_exclusive_group()
    transport.add_argument("--stdio", action="store_true", help="LSP on stdin/stdout (default)")
    transport.add_argument("--tcp", metavar="HOST:PORT", type=_host_port, help="LSP over TCP")
    _workspace(serve)

    agent = sub.add_parser("agent", help="run a session headless")
    agent.add_argument("task")
    _workspace(agent)
    _approval_and_budget(agent)
    for tier in ("architect", "actuator", "verifier", "speculator"):
        agent.add_argument(f"--{tier}-model", metavar="M")
    agent.add_argument("--model", metavar="M", help="one model for every tier not named separately")
    agent.add_argument("--energy-weights", metavar="A,B,G[,D,S]")
    agent.add_argument("--stability-threshold", type=float, metavar="EPS")
    agent.add_argument("--max-attempts", type=_positive_int, metavar="N")
    agent.add_argument("--defer-tests", action="store_true")
    agent.add_argument("--log-llm", action="store_true", help="store full prompts and replies")

    plan_cmd = sub.add_parser("plan", help="explore and print the plan for a task; change nothing")
    plan_cmd.add_argument("task")
    _read_only_mode(plan_cmd)

    explain = sub.add_parser("explain", help="answer a question about the code, citing path:line")
    explain.add_argument("question", metavar="QUESTION_OR_SYMBOL")
    _read_only_mode(explain)

    resume = sub.add_parser("resume", help="continue a stored session where it stopped")
    _session_choice(resume)
    _workspace(resume)
    _approval_and_budget(resume)

    abort = sub.add_parser("abort", help="stop a running session cleanly")
    _session_choice(abort)
    _workspace(abort)
    abort.add_argument("--json", action="store_true")

    status = sub.add_parser("status", help="a session's nodes, energy, spending and budget")
    _session_choice(status)
    _workspace(status)
    status.add_argument("--json", action="store_true")

    logs = sub.add_parser("logs", help="a session's model calls, statistics, errors, tools")
    _session_choice(logs)
    _workspace(logs)
    logs.add_argument("--stats", action="store_true", help="totals per tier and per model")
    logs.add_argument("--errors", action="store_true", help="everything that went wrong")
    logs.add_argument("--tools", action="store_true", help="sensor and command evidence")
    logs.add_argument("--node", metavar="ID", help="only this node's records")
    logs.add_argument("--json", action="store_true")

    replay_cmd = sub.add_parser("replay", help="re-run a stored session from its recorded replies")
    _session_choice(replay_cmd)
    _workspace(replay_cmd)
    replay_cmd.add_argument("--into", metavar="NEW_DIR", help="where to replay (a new directory)")
    replay_cmd.add_argument("--transcript", metavar="FILE", help="only write the transcript")
    replay_cmd.add_argument("--json", action="store_true", help="one JSON event per line")

    demo = sub.add_parser("demo", help="run the bundled calculator task offline")
    _workspace(demo)
    demo.add_argument("--json", action="store_true")

    ledger = sub.add_parser("ledger", help="list, show or roll back ledger entries")
    ledger.add_argument("action", nargs="?", choices=("show", "rollback"))
    ledger.add_argument("entry", nargs="?")
    ledger.add_argument(
        "--recent", nargs="?", type=_positive_int, const=10, default=None, metavar="N"
    )
    _workspace(ledger)
    ledger.add_argument("--json", action="store_true")

    map_cmd = sub.add_parser("map", help="the ranked repository map, as the architect gets it")
    map_cmd.add_argument("task", nargs="?", default="", help="rank for this task (optional)")
    _workspace(map_cmd)
    map_cmd.add_argument(
        "--focus",
        action="append",
        default=[],
        metavar="PATH",
        help="a file to rank first (repeatable), as the editor's current file",
    )
    map_cmd.add_argument(
        "--tokens", type=int, metavar="N", help="budget (default: [context] map_tokens)"
    )
    map_cmd.add_argument("--json", action="store_true")
    _dashboard_commands(sub)
    return parser


def _dashboard_commands(sub: Any) -> None:
    """``keel dashboard`` and ``keel sessions``: both read every workspace given with ``-w``
    (repeatable), by default every workspace in the registry (docs/how-to/dashboard.md)."""
    dashboard = sub.add_parser("dashboard", help="every session, live, in the browser")
    dashboard.add_argument("--port", type=int, metavar="N", help="default 3000 ([dashboard] port)")
    dashboard.add_argument("--host", metavar="ADDR", help="default 127.0.0.1 ([dashboard] host)")
    dashboard.add_argument(
        "-w", "--workspace", dest="workspaces", action="append", default=[], metavar="DIR"
    )
    sessions = sub.add_parser("sessions", help="list the sessions of every workspace")
    sessions.add_argument(
        "-w", "--workspace", dest="workspaces", action="append", default=[], metavar="DIR"
    )
    sessions.add_argument("--status", choices=SESSION_STATUSES)
    sessions.add_argument("--limit", type=_positive_int, default=50, metavar="N")
    sessions.add_argument("--json", action="store_true")


SESSION_STATUSES = ("running", "success", "partial", "failed", "aborted", "stopped")


def _listed_workspaces(args: argparse.Namespace) -> list[Path]:
    """``-w`` folders (each must exist), else the registry plus the current folder when it
    has a store."""
    from keel.dashboard.registry import known_workspaces
    from keel.engine.ports import ConfigError

    if args.workspaces:
        chosen = [Path(w).resolve() for w in args.workspaces]
        for path in chosen:
            if not path.is_dir():
                raise ConfigError(f"no workspace at {path} (no such directory)")
        return list(dict.fromkeys(chosen))
    found = known_workspaces()
    here = Path.cwd().resolve()
    if here not in found and store_file_exists(here):
        found.append(here)
    return found


def store_file_exists(workspace: Path) -> bool:
    return (workspace / ".keel" / "keel.db").is_file()


async def run_sessions(args: argparse.Namespace) -> int:
    """``keel sessions``: id, status, task, nodes, cost, start and duration per session."""
    import asyncio

    from keel.dashboard.listing import format_sessions, list_sessions, session_json
    from keel.dashboard.queries import Reader
    from keel.engine.ports import ConfigError

    workspaces = _listed_workspaces(args)
    if args.workspaces:
        for path in workspaces:
            if not store_file_exists(path):
                raise ConfigError(f"no Keel session in {path} (no .keel/keel.db)")
    else:  # a registered folder whose store was removed has no sessions (as on the dashboard)
        workspaces = [path for path in workspaces if store_file_exists(path)]
    rows, problems = await asyncio.to_thread(
        list_sessions, workspaces, Reader.for_environment(), limit=args.limit, status=args.status
    )
    for problem in problems:
        print(f"keel: {visible(problem)}", file=sys.stderr)
    if args.json:
        print(json.dumps([session_json(r) for r in rows]))
    else:
        print(visible(format_sessions(rows, show_workspace=len(workspaces) > 1)))
    return EXIT_FAILED if problems and not rows else EXIT_OK


async def dashboard_ledger(workspace: Path, session_id: str) -> list[dict[str, Any]] | None:
    """The ledger page's entries: the session's commits with their trailers (via keel.ledger)."""
    from keel.engine.ports import ConfigError
    from keel.ledger import GitLedger

    try:
        ledger = await GitLedger.open(workspace, create=False)
    except ConfigError:
        return None  # not a repository
    return [_entry_dict(e) for e in await ledger.entries(None) if e.session == session_id]


def run_dashboard(args: argparse.Namespace) -> int:
    """``keel dashboard``: serve until interrupted (Ctrl-C stops it with status 0)."""
    import asyncio

    from keel.config import load_config
    from keel.dashboard.server import DashboardRefused, Settings, create_app, serve
    from keel.engine.ports import ConfigError

    config = load_config(Path.cwd()).dashboard
    workspaces = _listed_workspaces(args) if args.workspaces else []
    settings = Settings(
        host=args.host or config.host,
        port=config.port if args.port is None else args.port,
        password=config.resolve_password(os.environ),
        workspaces=workspaces,
    )
    api = dashboard_api(args)
    try:
        app = create_app(settings, ledger=dashboard_ledger, api=api)
    except DashboardRefused as exc:
        raise ConfigError(str(exc)) from exc
    shown = f"{len(workspaces)} workspace(s)" if workspaces else "every registered workspace"

    def ready(url: str) -> None:
        auth = "password required" if settings.password else "no password (loopback only)"
        api_note = f"; API at {url}api/v1" if api is not None else ""
        print(f"keel dashboard: {url} ({shown}; {auth}{api_note}); Ctrl-C stops it", flush=True)

    async def until_stopped() -> None:
        """Serve; SIGTERM stops like Ctrl-C (the API's runs end ``aborted``, resumable)."""
        import signal

        main = asyncio.current_task()
        assert main is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
        try:
            await serve(app, settings.host, settings.port, ready)
        except asyncio.CancelledError:
            return

    try:
        asyncio.run(until_stopped())
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_OK


def api_roots(args: argparse.Namespace) -> list[Path]:
    """The directories under which the execution API may run sessions: the ``-w`` folders,
    else every registered workspace and the current folder (docs/reference/api.md)."""
    if args.workspaces:
        return _listed_workspaces(args)
    return list(dict.fromkeys([*_listed_workspaces(args), Path.cwd().resolve()]))


def dashboard_api(args: argparse.Namespace) -> web.Application | None:
    """The ``/api/v1`` sub-application when the API token is set (the variable ``[dashboard]
    api_token_env`` names, as :func:`keel.api.api_token` reads it), else None: without a token
    the dashboard serves no API and does not even import it (it loads the engine)."""
    from keel.config import user_config
    from keel.engine.ports import ConfigError

    name = user_config(os.environ).dashboard.api_token_env
    if not os.environ.get(name):
        return None
    from keel.api import api_token, build_api_app
    from keel.api.app import MIN_TOKEN

    token = api_token(os.environ)
    if token is None:
        return None
    if len(token) < MIN_TOKEN:
        raise ConfigError(f"{name} must be at least {MIN_TOKEN} characters (the API token)")
    return build_api_app(api_roots(args), token=token, env=os.environ)


def _approval_and_budget(parser: argparse.ArgumentParser) -> None:
    """The options ``agent`` and ``resume`` share (docs/reference/cli.md)."""
    parser.add_argument("-y", "--yes", action="store_true", help="approve what policy allows")
    parser.add_argument("--mode", choices=("cautious", "balanced", "yolo"))
    parser.add_argument("-k", "--complexity-k", type=int)
    parser.add_argument("--max-cost", type=float, metavar="USD")
    parser.add_argument("--max-steps", type=_positive_int, metavar="N")
    parser.add_argument("--json", action="store_true", help="one JSON event per line on stdout")


def _read_only_mode(parser: argparse.ArgumentParser) -> None:
    """The options ``plan`` and ``explain`` share: the workspace, the model, the budget."""
    _workspace(parser)
    parser.add_argument("--model", metavar="M", help="the model (every tier not named)")
    parser.add_argument("--architect-model", metavar="M", help="the architect's model")
    parser.add_argument("--max-cost", type=float, metavar="USD")
    parser.add_argument("--max-steps", type=_positive_int, metavar="N")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")


def _session_choice(parser: argparse.ArgumentParser) -> None:
    """``--last`` (the default) or a session id."""
    parser.add_argument("session", nargs="?", help="a session id (default: the latest)")
    parser.add_argument("--last", action="store_true", help="the latest session (the default)")


def _workspace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-w", "--workspace", default=os.getcwd(), metavar="DIR")


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


async def run_map(args: argparse.Namespace) -> int:
    """``keel map``: the map for a task within the configured budget; reads, never creates."""
    import asyncio

    from keel.app import repository_context
    from keel.config import load_config
    from keel.engine.instructions import describe as describe_instructions
    from keel.engine.instructions import load_instructions
    from keel.engine.ports import ConfigError

    config = load_config(args.workspace)
    budget = args.tokens if args.tokens is not None else config.context.map_tokens
    if budget < 0:
        raise ConfigError(f"--tokens must be 0 or more, got {budget}")
    context = repository_context(args.workspace)
    ranked = await context.render_map(args.task, focus=args.focus, budget_tokens=budget)
    found = await asyncio.to_thread(
        load_instructions,
        args.workspace,
        config.context.instructions,
        config.context.max_prompt_tokens * 4,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "task": args.task,
                    "budget_tokens": budget,
                    "tokens": ranked.tokens,
                    "included": list(ranked.included),
                    "summarised": list(ranked.summarised),
                    "listed": list(ranked.listed),
                    "omitted": list(ranked.omitted),
                    "text": ranked.text,
                    "instructions": [
                        {"path": f.path, "characters": f.size, "note": f.note} for f in found.files
                    ],
                    "warnings": list(found.warnings),
                }
            )
        )
    else:
        print(ranked.text)
        print("\nInstructions (every prompt of every tier opens with them):")
        print("\n".join(f"  {line}" for line in describe_instructions(found)))
    return EXIT_OK


def run_serve(args: argparse.Namespace) -> int:
    """``keel serve``: the language server; the client names the workspace, not ``-w``."""
    from keel.app import serve

    return serve(args.tcp)


async def _agent(args: argparse.Namespace) -> int:
    return await run_agent(args, args.task, _flags(args))


#: ``keel COMMAND`` -> what runs it (``serve`` runs outside the event loop, in ``_run``). Each
#: function imports what it needs, so adding a command here costs the others nothing.
COMMANDS: dict[str, Callable[[argparse.Namespace], Awaitable[int]]] = {
    "agent": _agent,
    "demo": run_demo,
    "plan": run_plan,
    "explain": run_explain,
    "resume": run_resume,
    "abort": run_abort,
    "status": run_status,
    "logs": run_logs,
    "replay": run_replay,
    "map": run_map,
    "ledger": run_ledger,
}


async def dispatch(args: argparse.Namespace) -> int:
    return await COMMANDS[args.command](args)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        status = _run(build_parser().parse_args(argv))
        if not sys.stdout.closed:  # `keel serve` closes it on the protocol's `exit`
            sys.stdout.flush()  # a reader that went away shows up here, not at interpreter exit
        return status
    except BrokenPipeError:
        # `keel status --json | head -1`: stop quietly, like other Unix tools. stdout now points
        # at devnull so the interpreter's own final flush does not fail again (Python docs,
        # "Note on SIGPIPE").
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    finally:
        if argv is None:  # the console script: the process ends next
            # Nothing left needs the cyclic collector; frozen, the interpreter's shutdown skips
            # traversing every object (about a third of `keel status`'s CPU time,
            # docs/benchmarks.md). Not for main([...]) in a test or bench process.
            gc.freeze()


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from keel.engine.ports import ConfigError, KeelError

    try:
        if args.command == "dashboard":
            return run_dashboard(args)
        if args.command == "sessions":
            return asyncio.run(run_sessions(args))
        args.workspace = Path(args.workspace).resolve()
        if args.command == "serve":
            return run_serve(args)
        if args.command not in CREATING_COMMANDS and not args.workspace.is_dir():
            raise ConfigError(f"no workspace at {args.workspace} (no such directory)")
        return asyncio.run(dispatch(args))
    except ConfigError as exc:
        print(f"keel: {visible(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeelError as exc:
        print(f"keel: {visible(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        raise
    except OSError as exc:
        print(f"keel: {visible(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("keel: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
