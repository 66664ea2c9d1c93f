"""``keel status``, ``keel logs`` and ``keel ledger`` on real sessions, and budgets.

Must-show 2: status, logs statistics and the ledger agree with each other and with git.
Must-show 3: ``--max-cost`` stops before the call that would exceed it; a resume with a higher
budget completes. The other tests cover each ``logs`` view, ``--node`` and secrets.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import (
    KEEL,
    bundle,
    json_events,
    node,
    plan,
    raw,
    run_session,
)
from tests.integration.small_session import (
    SmallRun,
    agent_command,
    call_cost,
    init_workspace,
    keel_env,
    keel_json,
    request_counts,
    resume_command,
    run,
    session_commits,
    small_entries,
)

TOTAL_KEYS = ("calls", "input_tokens", "output_tokens", "cost_usd", "unpriced")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    return {**env, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / ".c"), **extra}


# ----------------------------------------------------------------------------- must-show 2


def test_status_logs_and_ledger_agree_with_each_other_and_git(
    small_run: SmallRun, tmp_path: Path
) -> None:
    ws, env = small_run.workspace, _env(tmp_path)
    status = keel_json(ws, env, "status")
    stats = keel_json(ws, env, "logs", "--stats")
    ledger = keel_json(ws, env, "ledger", "--recent")
    assert status["session"] == stats["session"] == small_run.session
    mine = [entry for entry in ledger if entry["session"] == small_run.session]
    in_git = session_commits(ws, small_run.session)
    # node committed counts = ledger entries of the session = git commits with its trailer
    assert status["counts"]["committed"] == len(mine) == len(in_git) == 3
    assert status["ledger_entries"] == 3
    assert [entry["sha"] for entry in mine] == in_git
    by_node = {entry["node"]: entry["sha"] for entry in mine}
    assert {n["id"]: n["ledger"] for n in status["nodes"]} == by_node
    # tokens and cost: status = logs statistics = the session's own totals = the price table
    total = stats["stats"]["total"]
    assert {k: status["totals"][k] for k in TOTAL_KEYS} == {k: total[k] for k in TOTAL_KEYS}
    finished = small_run.events[-1]["totals"]
    assert {k: finished[k] for k in TOTAL_KEYS} == status["totals"]
    assert status["totals"] == {
        "calls": 7,
        "input_tokens": 7000,
        "output_tokens": 700,
        "cost_usd": pytest.approx(7 * call_cost(1000, 100)),
        "unpriced": 0,
    }
    for grouping in ("by_tier", "by_model"):
        groups = stats["stats"][grouping].values()
        assert sum(g["calls"] for g in groups) == 7
        assert sum(g["cost_usd"] for g in groups) == pytest.approx(total["cost_usd"])
    assert stats["stats"]["by_tier"]["actuator"]["calls"] == 4


def test_status_reports_lifecycle_energy_retries_and_budget(
    small_run: SmallRun, tmp_path: Path
) -> None:
    status = keel_json(small_run.workspace, _env(tmp_path), "status")
    assert status["outcome"] == "success" and status["running"] is False
    assert set(status["counts"]) == {
        "queued",
        "running",
        "verifying",
        "retrying",
        "awaiting_approval",
        "committed",
        "failed",
        "escalated",
    }
    nodes = {n["id"]: n for n in status["nodes"]}
    assert nodes["node-2"]["retries"] == 1 and nodes["node-1"]["retries"] == 0
    assert status["retries"] == 1 and status["escalations"] == 0
    for n in nodes.values():
        assert set(n["energy"]) == {"v_syn", "v_str", "v_log", "v_boot", "v_sheaf", "v"}
        assert n["stable"] is True and n["energy"]["v"] < status["epsilon"]
    assert status["budget"] == {
        "max_cost": None,
        "max_steps": 100,
        "cost_left": None,
        "steps_left": 93,
    }


def test_status_as_text_names_states_energy_and_budget(small_run: SmallRun, tmp_path: Path) -> None:
    proc = run([*KEEL, "status", "-w", str(small_run.workspace)], _env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert small_run.session in proc.stdout
    assert "committed 3" in proc.stdout
    assert "93 of 100 model calls left" in proc.stdout
    assert "node-2" in proc.stdout and "retries 1" in proc.stdout


def test_logs_list_every_call_and_filter_by_node(small_run: SmallRun, tmp_path: Path) -> None:
    env = _env(tmp_path)
    calls = keel_json(small_run.workspace, env, "logs")["calls"]
    assert [(c["tier"], c["node"], c["attempt"]) for c in calls] == [
        ("architect", None, 1),
        ("speculator", None, 1),
        ("actuator", "node-1", 1),
        ("actuator", "node-2", 1),
        ("verifier", "node-2", 1),
        ("actuator", "node-2", 2),
        ("actuator", "node-3", 1),
    ]
    assert all(c["ok"] and c["model"] == "openai:gpt-4.1" for c in calls)
    assert all("prompt" not in c and "response" not in c for c in calls)  # no --log-llm
    node2 = keel_json(small_run.workspace, env, "logs", "--node", "node-2", "--stats", "--tools")
    assert node2["stats"]["total"]["calls"] == 3
    assert [(t["node"], t["attempt"], t["stable"]) for t in node2["tools"]] == [
        ("node-2", 1, False),
        ("node-2", 2, True),
    ]
    first = node2["tools"][0]
    assert first["commands"] == [{"command": "python -m compileall -q .", "ok": True}]
    assert "contract" in first["sensors"]


def test_status_of_an_unknown_workspace_is_a_clear_error(tmp_path: Path) -> None:
    proc = run([*KEEL, "status", "-w", str(tmp_path / "nothing")], _env(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.startswith("keel: no workspace at") and "Traceback" not in proc.stderr
    assert not (tmp_path / "nothing").exists()  # a report never creates anything
    (tmp_path / "nothing").mkdir()
    proc = run([*KEEL, "status", "-w", str(tmp_path / "nothing")], _env(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.startswith("keel: no Keel session in") and "Traceback" not in proc.stderr
    assert not (tmp_path / "nothing" / ".keel").exists()  # nor a store


# ----------------------------------------------------------------------------- errors, tools

SECRET = "hunter2-correct-horse-battery-staple"


def _troubled_entries() -> list[dict[str, Any]]:
    """An invalid reply, a missing verifier reply, a failing and a refused command, then an
    escalation; the failing command prints a line holding the secret."""
    return [
        plan(node("node-1", ["secret.txt"], title="Secret note")),
        raw("node-1", 1, "Sure! {not json"),
        bundle(
            "node-1",
            2,
            writes={"secret.txt": f"the password is {SECRET}\n"},
            commands=["python -m py_compile secret.txt", "rm -rf build"],
        ),
    ]


@pytest.fixture(scope="module")
def troubled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workspace = tmp_path_factory.mktemp("troubled") / "ws"

    async def go() -> None:
        result, _ = await run_session(
            workspace,
            _troubled_entries(),
            flags={"max_attempts": 2, "log_llm": True},
            env={"OPENAI_API_KEY": SECRET},
        )
        assert result.outcome == "failed"

    asyncio.run(go())
    return workspace


def test_errors_show_failed_calls_invalid_replies_commands_and_escalations(
    troubled: Path, tmp_path: Path
) -> None:
    data = keel_json(troubled, _env(tmp_path), "logs", "--errors")
    kinds = [(e["kind"], e["node"], e.get("attempt")) for e in data["errors"]]
    assert ("invalid_reply", "node-1", 1) in kinds
    assert ("call_failed", "node-1", 1) in kinds  # the verifier had no recorded reply
    assert ("command_failed", "node-1", 2) in kinds
    assert ("command_refused", "node-1", 2) in kinds
    assert ("escalation", "node-1", 2) in kinds
    failed = next(e for e in data["errors"] if e["kind"] == "command_failed")
    assert failed["command"] == "python -m py_compile secret.txt" and failed["exit_code"] == 1


def test_tools_show_each_attempts_commands_and_sensors(troubled: Path, tmp_path: Path) -> None:
    tools = keel_json(troubled, _env(tmp_path), "logs", "--tools")["tools"]
    assert [(t["attempt"], t["stable"]) for t in tools] == [(1, False), (2, False)]
    assert "schema" in tools[0]["sensors"]
    commands = {c["command"]: c for c in tools[1]["commands"]}
    assert commands["python -m py_compile secret.txt"]["exit_code"] == 1
    assert commands["rm -rf build"]["ok"] is False
    assert "not run" in commands["rm -rf build"]["message"]


def test_no_report_prints_a_secret(troubled: Path, tmp_path: Path) -> None:
    env = _env(tmp_path, OPENAI_API_KEY=SECRET)
    every_view = ["logs", "--errors", "--tools", "--stats"]
    for args in (["logs"], every_view, [*every_view, "--json"], ["status"], ["status", "--json"]):
        proc = run([*KEEL, *args, "-w", str(troubled)], env)
        assert proc.returncode == 0, proc.stderr
        assert SECRET not in proc.stdout + proc.stderr, args
        if args[0] == "logs" and "--json" in args:
            assert "[redacted]" in proc.stdout  # the secret was there, and was replaced


def test_the_secret_never_reached_the_store(troubled: Path, tmp_path: Path) -> None:
    """Even a reader without the key in its environment cannot show it: the store redacted
    the failing command's output (which quoted it) before writing it."""
    data = keel_json(troubled, _env(tmp_path), "logs", "--errors")
    failed = [e["message"] for e in data["errors"] if e["kind"] == "command_failed"]
    assert failed and all(SECRET not in m and "[redacted]" in m for m in failed)


def test_prompts_and_replies_appear_only_with_log_llm(
    troubled: Path, small_run: SmallRun, tmp_path: Path
) -> None:
    env = _env(tmp_path, OPENAI_API_KEY=SECRET)
    logged = keel_json(troubled, env, "logs")["calls"]
    answered = [c for c in logged if c["ok"]]
    assert answered and all("prompt" in c and "response" in c for c in answered)
    assert "Secret note" in answered[-1]["prompt"]
    plain = keel_json(small_run.workspace, env, "logs")["calls"]
    assert all("prompt" not in c for c in plain)


# ----------------------------------------------------------------------------- must-show 3


def test_max_cost_stops_before_the_call_that_would_exceed_it_and_resume_completes(
    tmp_path: Path,
) -> None:
    workspace = init_workspace(tmp_path / "ws")
    per_call = call_cost(100_000, 10_000)  # $0.28 at gpt-4.1 prices
    limit = 0.6  # two calls ($0.56) fit; a third could not (0.56 + 0.28 > 0.6)
    with FakeModelServer(small_entries(100_000, 10_000)) as server:
        env = keel_env(server, tmp_path)
        stopped = run(agent_command(workspace, "--max-cost", str(limit)), env)
        seen_at_stop = len(server.requests)
        status = keel_json(workspace, env, "status")
        requeued = _last_transition(workspace, "node-1")
        resumed = run(resume_command(workspace, "--max-cost", "5"), env)
        counts = request_counts(server.requests)
        after = keel_json(workspace, env, "status")
    assert stopped.returncode == 3, stopped.stderr
    events = json_events(stopped.stdout)
    budget = [e for e in events if e["type"] == "budget_exceeded"]
    assert len(budget) == 1 and budget[0]["reason"] == "max_cost"
    assert events[-1]["type"] == "session_finished" and events[-1]["budget_exceeded"] is True
    assert seen_at_stop == 2  # the third request never left
    assert status["totals"]["cost_usd"] == pytest.approx(2 * per_call)
    assert status["totals"]["cost_usd"] <= limit
    assert status["budget"]["cost_left"] == pytest.approx(limit - 2 * per_call)
    # node-1 was about to ask for its bundle: the stop puts it back in the queue
    assert status["counts"]["running"] == 0 and status["counts"]["queued"] == 3
    assert requeued == (
        "queued",
        "stopped by the max_cost budget while running; `keel resume` runs it again",
    )
    assert resumed.returncode == 0, resumed.stderr
    assert after["budget"]["max_cost"] == 5  # the raised budget is the session's now
    finished = json_events(resumed.stdout)[-1]
    assert finished["outcome"] == "success"
    assert finished["totals"]["cost_usd"] == pytest.approx(7 * per_call)
    assert len(counts) == 7 and set(counts.values()) == {1}  # nothing asked twice


def test_status_while_running_and_abort_from_another_terminal(tmp_path: Path) -> None:
    """A live run shows as running with its pid; ``keel abort`` ends it ``aborted`` (130)."""
    workspace = init_workspace(tmp_path / "ws")
    with FakeModelServer(small_entries()) as server:
        env = keel_env(server, tmp_path)
        server.hang_on("actuator", "node-2", 1)
        with subprocess.Popen(
            agent_command(workspace), env=env, stdout=subprocess.PIPE, text=True
        ) as agent:
            try:
                server.wait_for_requests(4, timeout=60)
                running = keel_json(workspace, env, "status")
                second = run(agent_command(workspace), env)
                aborted = keel_json(workspace, env, "abort")
                out, _ = agent.communicate(timeout=60)
            finally:
                agent.kill()
        after = keel_json(workspace, env, "status")
    assert running["running"] is True and running["pids"] == [agent.pid]
    assert running["counts"]["committed"] == 1
    assert second.returncode == 1 and f"pid {agent.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    assert aborted["signalled"] == [agent.pid]
    assert agent.returncode == 130
    finished = json_events(out)[-1]
    assert finished["type"] == "session_finished" and finished["outcome"] == "aborted"
    assert after["running"] is False and after["outcome"] == "aborted"
    assert not any((workspace / ".keel" / "sandboxes").glob("*/*"))
    assert after["pids"] == []
    # node-2 was waiting for its model reply: aborted, it is queued again, not "running"
    states = {n["id"]: n["state"] for n in after["nodes"]}
    assert states == {"node-1": "committed", "node-2": "queued", "node-3": "queued"}
    assert _last_transition(workspace, "node-2") == (
        "queued",
        "aborted while running; `keel resume` runs it again",
    )


def _last_transition(workspace: Path, node_id: str) -> tuple[str, str]:
    with sqlite3.connect(workspace / ".keel" / "keel.db") as db:
        row = db.execute(
            "SELECT state, detail FROM node_transitions WHERE node_id = ? ORDER BY id DESC",
            (node_id,),
        ).fetchone()
    return (row[0], row[1])


def test_max_cost_zero_stops_before_the_first_call_and_a_larger_budget_completes(
    tmp_path: Path,
) -> None:
    """No call was made yet, so the estimate of the first one (a priced model) decides."""
    workspace = init_workspace(tmp_path / "ws")
    with FakeModelServer(small_entries()) as server:
        env = keel_env(server, tmp_path)
        stopped = run(agent_command(workspace, "--max-cost", "0"), env)
        asked_at_stop = len(server.requests)
        resumed = run(resume_command(workspace, "--max-cost", "5"), env)
    assert stopped.returncode == 3, stopped.stderr
    assert asked_at_stop == 0
    events = json_events(stopped.stdout)
    [budget] = [e for e in events if e["type"] == "budget_exceeded"]
    assert budget["reason"] == "max_cost" and budget["calls"] == 0
    assert "the next call could cost up to $0.0" in budget["message"]
    assert resumed.returncode == 0, resumed.stderr
    assert json_events(resumed.stdout)[-1]["outcome"] == "success"


def test_budgets_given_to_resume_are_stored_with_the_session(tmp_path: Path) -> None:
    """``--max-steps`` on a resume is the session's limit from then on: status shows it and a
    plain resume keeps it."""
    workspace = init_workspace(tmp_path / "ws")
    with FakeModelServer(small_entries()) as server:
        env = keel_env(server, tmp_path)
        first = run(agent_command(workspace, "--max-steps", "2"), env)
        raised = run(resume_command(workspace, "--max-steps", "4"), env)
        status = keel_json(workspace, env, "status")
        plain = run(resume_command(workspace), env)
        asked = len(server.requests)
    assert (first.returncode, raised.returncode, plain.returncode) == (3, 3, 3)
    assert status["budget"]["max_steps"] == 4 and status["budget"]["steps_left"] == 0
    assert status["totals"]["calls"] == 4
    [budget] = [e for e in json_events(plain.stdout) if e["type"] == "budget_exceeded"]
    assert budget["message"] == "step budget reached: 4 of 4 model calls"
    assert asked == 4


def test_text_outputs_say_when_calls_were_unpriced(tmp_path: Path) -> None:
    """A model without a price costs 0 and every text report says so."""
    workspace = init_workspace(tmp_path / "ws")
    with FakeModelServer(small_entries()) as server:
        env = keel_env(server, tmp_path)
        command = [*KEEL, "agent", "-y", "--model", "openai-compatible:llama-local"]
        finished = run([*command, "-w", str(workspace), "Write the release notes"], env)
    assert finished.returncode == 0, finished.stderr
    assert "$0.0000 (7 calls unpriced)" in finished.stdout.splitlines()[-1]
    status = run([*KEEL, "status", "-w", str(workspace)], env)
    assert "$0.0000 (7 calls unpriced)" in status.stdout
    stats = run([*KEEL, "logs", "--stats", "-w", str(workspace)], env).stdout.splitlines()
    total = next(line for line in stats if line.startswith("total"))
    assert total.endswith("(7 calls unpriced)")


def test_a_crashed_runs_pid_taken_by_another_process_is_neither_running_nor_signalled(
    small_run: SmallRun, tmp_path: Path
) -> None:
    """A run left open by a crash whose pid now belongs to a later process: ``status`` says
    not running, and ``keel abort`` closes the run without signalling that stranger."""
    import shutil
    import socket

    workspace = tmp_path / "copy"
    shutil.copytree(small_run.workspace, workspace, symlinks=True)
    env = _env(tmp_path)
    session = keel_json(workspace, env, "status")["session"]
    with subprocess.Popen(["sleep", "600"]) as stranger:
        try:
            with sqlite3.connect(workspace / ".keel" / "keel.db") as db:
                db.execute(
                    "INSERT INTO runs (session_id, pid, host, started_at) VALUES (?, ?, ?, ?)",
                    (session, stranger.pid, socket.gethostname(), "2026-01-01T00:00:00.000+00:00"),
                )
            status = keel_json(workspace, env, "status")
            aborted = run([*KEEL, "abort", "-w", str(workspace), "--json"], env)
            assert stranger.poll() is None  # still running: never signalled
        finally:
            stranger.kill()
    assert status["running"] is False and status["pids"] == []
    assert aborted.returncode == 1  # nothing to abort
    assert json.loads(aborted.stdout)["signalled"] == []
    with sqlite3.connect(workspace / ".keel" / "keel.db") as db:
        open_runs = db.execute("SELECT count(*) FROM runs WHERE ended_at IS NULL").fetchone()
    assert open_runs == (0,)
