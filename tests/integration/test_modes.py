"""``keel plan`` and ``keel explain`` through the real CLI, the real OpenAI SDK and the fake
model server (or a replay transcript): what they print, their JSON, their errors, and that
they write nothing at all in the workspace."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import KEEL, node, plan, write_transcript
from tests.integration.small_session import MODEL, keel_env, run

CALC = "def add(a, b):\n    return a + b\n\n\nclass Calculator:\n    total = 0\n"


def workspace_digest(root: Path) -> str:
    """Every path under ``root`` (directories too, ``.git`` included) with its content."""
    digest = hashlib.sha256()
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        for name in sorted([*subdirs, *files]):
            path = Path(directory, name)
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            if path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "calc.py").write_text(CALC)
    (ws / "README.md").write_text("# Calc\n")
    return ws


def explain_entry(attempt: int = 1, **reply: Any) -> dict[str, Any]:
    return {"tier": "architect", "node": None, "attempt": attempt, "reply": reply}


def keel(server: FakeModelServer, tmp_path: Path, *args: str, **env: str) -> Any:
    return run([*KEEL, *args, "--model", MODEL], keel_env(server, tmp_path / "home", **env))


TWO_NODES = plan(
    node("sub", ["src/calc.py"], title="Add subtract"),
    {
        **node("tests", ["tests/test_calc.py"], kind="unit_test", depends_on=["sub"]),
        "context": ["src/calc.py"],
        "title": "Test subtract",
    },
)


def test_plan_prints_the_dag_and_writes_nothing(workspace: Path, tmp_path: Path) -> None:
    before = workspace_digest(workspace)
    with FakeModelServer([TWO_NODES]) as server:
        proc = keel(server, tmp_path, "plan", "-w", str(workspace), "Add subtract")
        requests = [r for r in server.requests if r.method == "POST"]
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "# Plan: Add subtract" in out
    assert "## sub: Add subtract" in out and "## tests: Test subtract" in out
    assert out.index("## sub:") < out.index("## tests:")
    assert "- kind: unit_test" in out and "- owns: `tests/test_calc.py`" in out
    assert "- reads: `src/calc.py`" in out and "- depends on: sub" in out
    # One architect request, with the workspace as a session's architect sees it.
    assert [r.headers["X-Keel-Tier"] for r in requests] == ["architect"]
    prompt = json.dumps(requests[0].body)
    assert "src/calc.py" in prompt and "task_plan" in prompt
    assert workspace_digest(workspace) == before
    assert not (workspace / ".keel").exists() and not (workspace / ".git").exists()


def test_plan_json_is_the_plan_object(workspace: Path, tmp_path: Path) -> None:
    with FakeModelServer([TWO_NODES]) as server:
        proc = keel(server, tmp_path, "plan", "--json", "-w", str(workspace), "Add subtract")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [n["id"] for n in data["nodes"]] == ["sub", "tests"]
    assert data["nodes"][1]["kind"] == "unit_test"
    assert data["nodes"][1]["depends_on"] == ["sub"]


def test_plan_in_a_git_repository_changes_nothing_in_it(workspace: Path, tmp_path: Path) -> None:
    from tests.integration.conftest import git

    git(workspace, "init", "-q", "-b", "main")
    git(workspace, "add", "-A")
    git(workspace, "commit", "-qm", "initial")
    before = workspace_digest(workspace)
    with FakeModelServer([TWO_NODES]) as server:
        proc = keel(server, tmp_path, "plan", "-w", str(workspace), "Add subtract")
    assert proc.returncode == 0, proc.stderr
    assert workspace_digest(workspace) == before
    assert git(workspace, "status", "--porcelain", "--ignored") == ""


def test_an_invalid_plan_is_sent_back_then_fails_clearly(workspace: Path, tmp_path: Path) -> None:
    cycle = plan(node("a", ["a.py"], depends_on=["b"]), node("b", ["b.py"], depends_on=["a"]))
    entries = [{**cycle, "attempt": n} for n in (1, 2, 3)]
    before = workspace_digest(workspace)
    with FakeModelServer(entries) as server:
        proc = keel(server, tmp_path, "plan", "--json", "-w", str(workspace), "Loop")
        attempts = [r.headers["X-Keel-Attempt"] for r in server.requests if r.method == "POST"]
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "plan attempt 1 invalid: dependency cycle" in proc.stderr
    assert "keel: no valid plan after 3 attempts" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert attempts == ["1", "2", "3"]
    assert workspace_digest(workspace) == before


def test_plan_stops_at_the_step_budget_with_status_3(workspace: Path, tmp_path: Path) -> None:
    bad = {"tier": "architect", "node": None, "attempt": 1, "text": "not json"}
    with FakeModelServer([bad]) as server:
        proc = keel(server, tmp_path, "plan", "--max-steps", "1", "-w", str(workspace), "X")
    assert proc.returncode == 3, proc.stderr
    assert "step budget reached: 1 of 1 model calls" in proc.stderr


def test_plan_refuses_a_missing_workspace_and_creates_none(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with FakeModelServer([TWO_NODES]) as server:
        proc = keel(server, tmp_path, "plan", "-w", str(missing), "Add subtract")
        assert [r for r in server.requests if r.method == "POST"] == []
    assert proc.returncode == 2
    assert "no workspace at" in proc.stderr
    assert not missing.exists()


def test_explain_keeps_true_citations_and_drops_the_rest(workspace: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.py").write_text("x = 1\n")
    (workspace / "link.py").symlink_to(tmp_path / "outside.py")
    reply = explain_entry(
        answer="`Calculator` keeps a running `total`; `add` sums two numbers.",
        citations=[
            {"path": "src/calc.py", "line": 5},
            {"path": "./src/calc.py", "line": 1},
            {"path": "src/calc.py", "line": 5},
            {"path": "src/calc.py", "line": 7},
            {"path": "src/missing.py", "line": 1},
            {"path": "../outside.py", "line": 1},
            {"path": "/etc/passwd", "line": 1},
            {"path": "link.py", "line": 1},
            {"path": "src", "line": 1},
        ],
    )
    before = workspace_digest(workspace)
    with FakeModelServer([reply]) as server:
        proc = keel(server, tmp_path, "explain", "--json", "-w", str(workspace), "Calculator")
        requests = [r for r in server.requests if r.method == "POST"]
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["answer"].startswith("`Calculator` keeps")
    assert data["citations"] == [
        {"path": "src/calc.py", "line": 5},
        {"path": "src/calc.py", "line": 1},
    ]
    reasons = {(d["path"], d["line"]): d["reason"] for d in data["dropped"]}
    assert reasons[("src/calc.py", 7)] == "src/calc.py has only 6 lines"
    assert reasons[("src/missing.py", 1)] == "no such file in the workspace"
    assert "'..' is not allowed" in reasons[("../outside.py", 1)]
    assert "absolute paths are not allowed" in reasons[("/etc/passwd", 1)]
    assert "outside the workspace" in reasons[("link.py", 1)]
    assert reasons[("src", 1)] == "no such file in the workspace"
    assert "keel: dropped citation src/calc.py:7: src/calc.py has only 6 lines" in proc.stderr
    # The file defining the symbol was shown to the model with line numbers.
    prompt = json.dumps(requests[0].body)
    assert "explanation" in prompt
    assert "5| class Calculator:" in prompt
    assert workspace_digest(workspace) == before


def test_explain_text_output_lists_sources_and_dropped(workspace: Path, tmp_path: Path) -> None:
    reply = explain_entry(
        answer="It adds.",
        citations=[{"path": "src/calc.py", "line": 2}, {"path": "gone.py", "line": 3}],
    )
    with FakeModelServer([reply]) as server:
        proc = keel(server, tmp_path, "explain", "-w", str(workspace), "What does src/calc.py do?")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[:3] == ["# What does src/calc.py do?", "", "It adds."]
    assert "## Sources\n\n- src/calc.py:2" in proc.stdout
    assert "## Dropped citations\n\n- gone.py:3: no such file in the workspace" in proc.stdout


def test_explain_bad_replies_fail_with_a_clear_error(workspace: Path, tmp_path: Path) -> None:
    entries = [
        {"tier": "architect", "node": None, "attempt": 1, "text": "I think it adds."},
        explain_entry(2, answer="", citations=[]),
        explain_entry(3, answer="x", citations=[{"path": "a.py", "line": 0}]),
    ]
    before = workspace_digest(workspace)
    with FakeModelServer(entries) as server:
        proc = keel(server, tmp_path, "explain", "--json", "-w", str(workspace), "add")
        bodies = [json.dumps(r.body) for r in server.requests if r.method == "POST"]
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("keel: no valid explanation after 3 attempts: ")
    assert "citations.0.line" in proc.stderr
    assert "Traceback" not in proc.stderr
    # Each failure is fed back to the next attempt.
    assert "Your previous reply was invalid" in bodies[1]
    assert workspace_digest(workspace) == before


def test_explain_redacts_secrets_from_the_answer(workspace: Path, tmp_path: Path) -> None:
    secret = "hunter2-very-secret-value"
    reply = explain_entry(answer=f"The token is {secret}.", citations=[])
    with FakeModelServer([reply]) as server:
        proc = keel(
            server, tmp_path, "explain", "-w", str(workspace), "token?", DEPLOY_TOKEN=secret
        )
    assert proc.returncode == 0, proc.stderr
    assert secret not in proc.stdout
    assert "The token is [redacted]." in proc.stdout


def test_explain_through_a_replay_transcript(workspace: Path, tmp_path: Path) -> None:
    transcript = write_transcript(
        tmp_path / "explain.jsonl",
        [explain_entry(answer="Sums.", citations=[{"path": "src/calc.py", "line": 1}])],
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env["HOME"] = str(tmp_path / "home")
    proc = run(
        [
            *KEEL,
            "explain",
            "--json",
            "--model",
            f"replay:{transcript}",
            "-w",
            str(workspace),
            "add",
        ],
        env,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["citations"] == [{"path": "src/calc.py", "line": 1}]


async def test_a_fix_with_agent_session_shows_the_architect_its_file_first(
    tmp_path: Path,
) -> None:
    """``keel agent`` and ``keel plan`` share one planning path: a session's plan scope (the
    file of the error) is the repository map's focus, ranked before every other file."""
    from dataclasses import replace

    from keel.app import open_engine
    from keel.config import load_config
    from keel.engine.planner import PlanScope
    from tests.integration.conftest import RecordingSink, ScriptedApprover

    ws = tmp_path / "ws"
    (ws / "a").mkdir(parents=True)
    for n in range(40):
        (ws / "a" / f"m{n:02}.py").write_text(f"def helper_{n}(x):\n    return x\n")
    (ws / "a" / "core.py").write_text(
        "".join(f"from a.m{n:02} import helper_{n}\n" for n in range(40))
    )
    (ws / "zz").mkdir()
    (ws / "zz" / "broken.py").write_text("def broken(x):\n    return y\n")
    fix = plan(node("fix", ["zz/broken.py"], title="Fix broken.py"))
    with FakeModelServer([fix]) as server:
        env = keel_env(server, tmp_path / "home")
        config = load_config(ws, env=env, flags={"model": MODEL})
        async with open_engine(
            ws, "Fix", config, sink=RecordingSink(), approver=ScriptedApprover(),
            auto_approve=True, env=env,
        ) as engine:  # fmt: skip
            scoped = replace(engine, plan_scope=PlanScope(max_nodes=1, must_own=("zz/broken.py",)))
            await scoped.run("Fix the undefined name")
        first = next(r for r in server.requests if r.method == "POST")
    prompt = first.body["messages"][-1]["content"]
    assert "Repository map" in prompt  # the map, ranked with the scope's file as its focus
    ranked = [line for line in prompt.splitlines() if line.startswith(("a/", "zz/"))]
    assert ranked[0].startswith("zz/broken.py"), ranked[:3]


def test_plan_writes_nothing_into_an_existing_keel_folder(workspace: Path, tmp_path: Path) -> None:
    """After a session, ``.keel/`` exists: plan still writes nothing there (no map cache)."""
    (workspace / ".keel").mkdir()
    (workspace / ".keel" / "keel.db").write_bytes(b"not touched")
    before = workspace_digest(workspace)
    with FakeModelServer([TWO_NODES]) as server:
        proc = keel(server, tmp_path, "plan", "-w", str(workspace), "Add subtract")
    assert proc.returncode == 0, proc.stderr
    assert workspace_digest(workspace) == before
    assert sorted(p.name for p in (workspace / ".keel").iterdir()) == ["keel.db"]


def test_a_refusing_model_is_one_clear_line(workspace: Path, tmp_path: Path) -> None:
    with FakeModelServer([TWO_NODES]) as server:
        server.fail_next(1, status=401, message="invalid api key")
        proc = keel(server, tmp_path, "explain", "-w", str(workspace), "add")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("keel: ")
    assert "401" in proc.stderr or "invalid api key" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_explain_finds_a_symbol_past_the_listing_through_the_map(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "a").mkdir(parents=True)
    for n in range(320):
        (ws / "a" / f"f{n:03}.py").write_text(f"VALUE_{n} = {n}\n")
    (ws / "zz").mkdir()
    (ws / "zz" / "deep.py").write_text("class DeepThing:\n    depth = 9\n")
    reply = explain_entry(answer="Deep.", citations=[{"path": "zz/deep.py", "line": 1}])
    with FakeModelServer([reply]) as server:
        proc = keel(server, tmp_path, "explain", "--json", "-w", str(ws), "What is DeepThing?")
        (request,) = [r for r in server.requests if r.method == "POST"]
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["citations"] == [{"path": "zz/deep.py", "line": 1}]
    assert "1| class DeepThing:" in json.dumps(request.body)
