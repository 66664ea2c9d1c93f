"""``keel plan`` and ``keel explain`` explore before they answer, through the real CLI, the
real SDKs and the fake model server: the tool calls reach the model, the answer comes after,
refusals are reported, ``[context]`` switches them off, and the workspace stays as it was."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import KEEL, git, node, plan, write_transcript
from tests.integration.small_session import MODEL, keel_env, run
from tests.integration.test_modes import workspace_digest

SECRET = "sk-live-0123456789abcdef0123"
CALC = "def add(a, b):\n    return a + b\n\n\nclass Calculator:\n    total = 0\n"
TASK = "Add subtract"
FIX = plan(node("sub", ["src/calc.py"], title="Add subtract"))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A git repository with an ignored folder and a secret-looking file."""
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "calc.py").write_text(CALC)
    (ws / ".gitignore").write_text("build/\n")
    (ws / "build").mkdir()
    (ws / "build" / "out.py").write_text("def add(): ...  # IGNORED-COPY\n")
    (ws / ".env").write_text(f"API_KEY={SECRET}\n")
    git(ws, "init", "-q", "-b", "main")
    git(ws, "add", "src", ".gitignore")
    git(ws, "commit", "-qm", "initial")
    return ws


def turn(*calls: tuple[str, dict[str, Any]], attempt: int = 1, n: int = 1) -> dict[str, Any]:
    tool_calls = [{"name": name, "arguments": arguments} for name, arguments in calls]
    return {
        "tier": "architect",
        "node": None,
        "attempt": attempt,
        "turn": n,
        "tool_calls": tool_calls,
    }


def keel(server: FakeModelServer, tmp_path: Path, *args: str) -> Any:
    return run([*KEEL, *args, "--model", MODEL], keel_env(server, tmp_path / "home"))


def posts(server: FakeModelServer) -> list[Any]:
    return [r for r in server.requests if r.method == "POST"]


def explore_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("keel: explore ")]


def test_plan_explores_then_plans_and_reports_each_call(workspace: Path, tmp_path: Path) -> None:
    entries = [
        turn(
            ("search_code", {"pattern": "def add"}),
            ("open_file", {"path": "src/calc.py", "start": 5}),
            ("open_file", {"path": ".git/config"}),
            ("open_file", {"path": "build/out.py"}),
        ),
        FIX,
    ]
    before = workspace_digest(workspace)
    with FakeModelServer(entries) as server:
        proc = keel(server, tmp_path, "plan", "-w", str(workspace), TASK)
        requests = posts(server)
    assert proc.returncode == 0, proc.stderr
    # Two requests: the first offers the tools, the second carries their results.
    assert [r.headers.get("X-Keel-Turn") for r in requests] == [None, "2"]
    first, second = (json.dumps(r.body) for r in requests)
    assert {t["function"]["name"] for t in requests[0].body["tools"]} >= {
        "search_code",
        "open_file",
        "find_symbol",
        "list_folder",
    }
    assert "explore the workspace with read-only tools" in first
    assert "src/calc.py:1: def add(a, b):" in second
    assert "    5  class Calculator:" in second
    assert ".git/ is git's own data and is never read" in second
    assert "IGNORED-COPY" not in second and "ignored by git" in second
    # The plan comes after, on stdout; each call is one line on stderr, in order.
    assert "# Plan: Add subtract" in proc.stdout and "## sub: Add subtract" in proc.stdout
    lines = explore_lines(proc.stderr)
    assert lines[0].startswith('keel: explore search_code(pattern="def add"): ')
    assert lines[0].endswith(" chars")
    assert lines[1].startswith('keel: explore open_file(path="src/calc.py", start=5): ')
    assert lines[2] == (
        'keel: explore open_file(path=".git/config"): refused: '
        ".git/config: .git/ is git's own data and is never read"
    )
    assert lines[3].startswith('keel: explore open_file(path="build/out.py"): refused: ')
    assert len(lines) == 4
    assert workspace_digest(workspace) == before
    assert not (workspace / ".keel").exists()


def test_plan_json_prints_the_plan_exactly_and_the_calls_on_stderr(
    workspace: Path, tmp_path: Path
) -> None:
    entries = [turn(("list_folder", {}), ("open_file", {"path": ".env"})), FIX]
    with FakeModelServer(entries) as server:
        proc = keel(server, tmp_path, "plan", "--json", "-w", str(workspace), TASK)
        bodies = json.dumps([r.body for r in posts(server)])
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert list(data) == ["nodes"] and [n["id"] for n in data["nodes"]] == ["sub"]
    listed, secret = explore_lines(proc.stderr)
    assert listed.startswith("keel: explore list_folder(): ") and listed.endswith(" chars")
    assert secret == (
        'keel: explore open_file(path=".env"): refused: '
        ".env: looks like it holds secrets; its content is never shown"
    )
    assert SECRET not in bodies and SECRET not in proc.stdout + proc.stderr


def test_explain_opens_a_file_then_cites_it(workspace: Path, tmp_path: Path) -> None:
    """The question names no file or symbol, so no file is shown whole (the map outlines
    ``src/calc.py``): the model opens it, reads its numbered lines and cites one, kept."""
    entries = [
        turn(("open_file", {"path": ".git/config"}), ("search_code", {"pattern": "total"})),
        turn(("open_file", {"path": "src/calc.py", "start": 5, "end": 6}), n=2),
        {
            "tier": "architect",
            "node": None,
            "attempt": 1,
            "reply": {
                "answer": "A running total lives on the calculator class.",
                "citations": [{"path": "src/calc.py", "line": 6}],
            },
        },
    ]
    question = "where is the running total kept?"
    before = workspace_digest(workspace)
    with FakeModelServer(entries) as server:
        proc = keel(server, tmp_path, "explain", "--json", "-w", str(workspace), question)
        requests = posts(server)
    assert proc.returncode == 0, proc.stderr
    assert [r.headers.get("X-Keel-Turn") for r in requests] == [None, "2", "3"]
    assert "total = 0" not in json.dumps(requests[0].body)  # the map has outlines only
    assert "open_file numbers its lines" in json.dumps(requests[0].body)
    assert "    6      total = 0" in json.dumps(requests[2].body)
    data = json.loads(proc.stdout)
    assert data["citations"] == [{"path": "src/calc.py", "line": 6}] and data["dropped"] == []
    assert [(e["tool"], e["refused"]) for e in data["explore"]] == [
        ("open_file", True),
        ("search_code", False),
        ("open_file", False),
    ]
    assert data["explore"][0]["reason"] == ".git/config: .git/ is git's own data and is never read"
    assert workspace_digest(workspace) == before


def test_explain_text_prints_the_calls_on_stderr(workspace: Path, tmp_path: Path) -> None:
    entries = [
        turn(("find_symbol", {"name": "Calculator"}), ("open_file", {"path": "../ws/.env"})),
        {
            "tier": "architect",
            "node": None,
            "attempt": 1,
            "reply": {"answer": "A class.", "citations": [{"path": "src/calc.py", "line": 5}]},
        },
    ]
    with FakeModelServer(entries) as server:
        proc = keel(server, tmp_path, "explain", "-w", str(workspace), "what holds totals?")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# what holds totals?\n\nA class.")
    assert "- src/calc.py:5" in proc.stdout
    lines = explore_lines(proc.stderr)
    assert lines[0].startswith('keel: explore find_symbol(name="Calculator"): ')
    assert lines[1] == (
        'keel: explore open_file(path="../ws/.env"): refused: '
        "../ws/.env: '..' is not allowed; paths stay inside the workspace"
    )


@pytest.mark.parametrize("switch", ["explore_turns = 0", "explore_tokens = 0"])
@pytest.mark.parametrize("mode", ["plan", "explain"])
def test_a_zero_budget_offers_no_tools(
    workspace: Path, tmp_path: Path, switch: str, mode: str
) -> None:
    (workspace / "keel.toml").write_text(f"[context]\n{switch}\n")
    answer = (
        FIX
        if mode == "plan"
        else {
            "tier": "architect",
            "node": None,
            "attempt": 1,
            "reply": {"answer": "Adds.", "citations": []},
        }
    )
    # A model that would call a tool if it were offered one.
    entries = [turn(("open_file", {"path": "src/calc.py"})), answer]
    before = workspace_digest(workspace)
    with FakeModelServer(entries) as server:
        proc = keel(server, tmp_path, mode, "--json", "-w", str(workspace), "add")
        requests = posts(server)
    assert proc.returncode == 0, proc.stderr
    assert len(requests) == 1 and "tools" not in requests[0].body
    assert "read-only tools" not in json.dumps(requests[0].body)
    assert explore_lines(proc.stderr) == []
    assert mode == "plan" or json.loads(proc.stdout)["explore"] == []
    assert workspace_digest(workspace) == before


def test_exploring_writes_nothing_into_an_existing_keel_folder(
    workspace: Path, tmp_path: Path
) -> None:
    """After a session, ``.keel/`` exists; a session's exploration would cache its
    inventory there. Plan and explain do not, even when they explore."""
    (workspace / ".keel").mkdir()
    (workspace / ".keel" / "keel.db").write_bytes(b"not touched")
    entries = [turn(("search_code", {"pattern": "add"}), ("list_folder", {"path": "src"})), FIX]
    before = workspace_digest(workspace)
    with FakeModelServer(entries) as server:
        proc = keel(server, tmp_path, "plan", "--json", "-w", str(workspace), TASK)
    assert proc.returncode == 0, proc.stderr
    calls = explore_lines(proc.stderr)
    assert len(calls) == 2 and not [c for c in calls if ": refused: " in c], calls
    assert workspace_digest(workspace) == before
    assert sorted(p.name for p in (workspace / ".keel").iterdir()) == ["keel.db"]


def test_plan_explores_through_anthropic_tool_use(workspace: Path, tmp_path: Path) -> None:
    entries = [turn(("open_file", {"path": "src/calc.py"})), FIX]
    with FakeModelServer(entries) as server:
        env = keel_env(
            server,
            tmp_path / "home",
            ANTHROPIC_API_KEY="sk-ant-test-0123456789",
            ANTHROPIC_BASE_URL=server.anthropic_base_url,
        )
        model = "anthropic:claude-haiku-4-5"
        proc = run([*KEEL, "plan", "--json", "--model", model, "-w", str(workspace), TASK], env)
        requests = posts(server)
    assert proc.returncode == 0, proc.stderr
    assert len(requests) == 2
    assert "open_file" in {t["name"] for t in requests[0].body["tools"]}
    assert "1  def add(a, b):" in json.dumps(requests[1].body)
    [call] = explore_lines(proc.stderr)
    assert call.startswith("keel: explore open_file(") and ": refused: " not in call


def test_plan_explores_through_a_replay_transcript(workspace: Path, tmp_path: Path) -> None:
    transcript = write_transcript(
        tmp_path / "plan.jsonl", [turn(("find_symbol", {"name": "Calculator"})), FIX]
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env["HOME"] = str(tmp_path / "home")
    before = workspace_digest(workspace)
    command = [*KEEL, "plan", "--json", "--model", f"replay:{transcript}", "-w", str(workspace)]
    proc = run([*command, TASK], env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [n["id"] for n in data["nodes"]] == ["sub"]
    [call] = explore_lines(proc.stderr)
    assert call.startswith("keel: explore find_symbol(") and ": refused: " not in call
    assert workspace_digest(workspace) == before


def test_the_step_budget_stops_an_exploring_plan_with_status_3(
    workspace: Path, tmp_path: Path
) -> None:
    """Each model turn of the exploration is a step: with one step, the tool calls run but
    the turn that would read their results is never asked."""
    entries = [turn(("open_file", {"path": "src/calc.py"})), FIX]
    with FakeModelServer(entries) as server:
        proc = keel(server, tmp_path, "plan", "--max-steps", "1", "-w", str(workspace), TASK)
        requests = posts(server)
    assert proc.returncode == 3, proc.stderr
    assert len(requests) == 1
    assert "step budget reached: 1 of 1 model calls" in proc.stderr
    assert explore_lines(proc.stderr)[0].startswith('keel: explore open_file(path="src/calc.py")')
    assert proc.stdout == ""


def test_a_spent_token_budget_refuses_the_next_call_and_the_model_must_answer(
    workspace: Path, tmp_path: Path
) -> None:
    (workspace / "keel.toml").write_text("[context]\nexplore_tokens = 10\n")
    entries = [
        turn(("open_file", {"path": "src/calc.py"}), ("list_folder", {})),
        turn(("list_folder", {}), n=2),
        FIX,
    ]
    with FakeModelServer(entries) as server:
        proc = keel(server, tmp_path, "plan", "--json", "-w", str(workspace), TASK)
        requests = posts(server)
    assert proc.returncode == 0, proc.stderr
    opened, listed = explore_lines(proc.stderr)
    assert ": refused: " not in opened and int(opened.rsplit(" ", 2)[-2]) <= 40
    assert listed.endswith(": refused: the exploration budget is spent"), listed
    # The second request withholds the tools and says why; the model answers with the plan.
    assert len(requests) == 2 and requests[1].body.get("tool_choice") == "none"
    assert "The exploration budget is spent" in json.dumps(requests[1].body)
