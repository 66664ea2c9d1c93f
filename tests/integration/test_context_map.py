"""The ranked repository map reaches the architect: the first architect request at the fake
model server holds the map (the file defining the name the task mentions first, with its
outline), within ``[context] map_tokens``, without secret or ignored files; and ``keel map``
prints exactly the map that request held.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.fakes.model_server import FakeModelServer
from tests.integration.conftest import git, node, plan, run_keel

TASK = "Make parse_duration accept hours as well as minutes"
DURATIONS = '''"""Durations."""


def parse_duration(text: str) -> int:
    """Minutes in ``text`` such as ``15m``."""
    return int(text.rstrip("m"))


class Stopwatch:
    def lap(self) -> int:
        return parse_duration("1m")
'''


def workspace(root: Path) -> Path:
    ws = root / "ws"
    for i in range(60):
        package = ws / "app" / f"part{i // 10}"
        package.mkdir(parents=True, exist_ok=True)
        (package / f"feature_{i:02d}.py").write_text(
            f"def feature_{i}_handler(request):\n    return request\n\n\n"
            f"class Feature{i}Settings:\n    enabled = True\n"
        )
    (ws / "units").mkdir()
    (ws / "units" / "durations.py").write_text(DURATIONS)
    (ws / "app" / "schedule.py").write_text(
        "from units.durations import parse_duration\n\n\n"
        "def next_run(spec):\n    return parse_duration(spec)\n"
    )
    (ws / ".env").write_text("API_TOKEN=do-not-show\n")
    (ws / ".gitignore").write_text("generated/\n")
    (ws / "generated").mkdir()
    (ws / "generated" / "parse_duration_cache.py").write_text("def parse_duration(): 1\n")
    git(ws.parent, "init", "-q", str(ws))
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "initial")
    return ws


def user_text(body: dict[str, object]) -> str:
    messages = body["messages"]
    assert isinstance(messages, list)
    return "\n".join(str(m["content"]) for m in messages if m["role"] == "user")


def test_first_architect_request_holds_the_ranked_map(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "KEEL_MAP_TOKENS": "700"}
    printed = run_keel("map", TASK, "-w", str(ws), "--json", env=env)
    assert printed.returncode == 0, printed.stderr
    shown = json.loads(printed.stdout)
    assert shown["budget_tokens"] == 700 and shown["tokens"] <= 700
    assert not (ws / ".keel").exists()  # keel map reads; it creates nothing

    entries = [plan(node("n1", ["units/durations.py"]))]
    with FakeModelServer(entries) as server:
        env |= {
            "OPENAI_API_KEY": "sk-test-not-a-real-key",
            "OPENAI_BASE_URL": server.openai_base_url,
        }
        proc = run_keel(
            "agent",
            "-y",
            "--json",
            "--model",
            "openai:gpt-4.1",
            "--max-steps",
            "1",
            "-w",
            str(ws),
            TASK,
            env=env,
        )
        architect = [r for r in server.requests if r.headers.get("X-Keel-Tier") == "architect"]
    assert architect, proc.stderr
    prompt = user_text(architect[0].body)
    assert shown["text"] in prompt  # keel map prints the map as the model gets it
    assert "Workspace files:" not in prompt
    map_text = prompt[prompt.index("Repository map (") :].split("\n\nKey files:")[0]
    assert len(map_text) // 4 <= 700
    lines = map_text.splitlines()
    assert lines[1] == "units/durations.py:"
    assert "    4│def parse_duration(text: str) -> int:" in lines
    assert shown["included"][0] == "units/durations.py"
    assert "API_TOKEN" not in prompt and ".env" not in lines
    assert "generated/parse_duration_cache.py" not in prompt
    assert "Not shown, for the budget:" in map_text  # 60 features do not fit in 700 tokens


def test_keel_map_focus_ranks_a_file_first_and_tokens_sets_the_budget(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    focus = "app/part3/feature_37.py"
    printed = run_keel(
        "map", TASK, "-w", str(ws), "--json", "--focus", focus, "--tokens", "300", env=env
    )
    assert printed.returncode == 0, printed.stderr
    shown = json.loads(printed.stdout)
    assert shown["budget_tokens"] == 300 and shown["tokens"] <= 300
    assert shown["included"][0] == focus  # the editor's file outranks the task's own match
    default = json.loads(run_keel("map", TASK, "-w", str(ws), "--json", env=env).stdout)
    assert default["budget_tokens"] == 4000 and default["included"][0] == "units/durations.py"
