"""The read-only modes: the planning path they share with sessions, citations, rendering."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keel.engine.models import Tier
from keel.engine.modes import (
    EphemeralStore,
    Explained,
    Explored,
    ReadOnlyModes,
    check_citations,
    explanation_markdown,
    plan_markdown,
)
from keel.engine.planner import PlanScope
from keel.engine.planning import LISTING_LIMIT, focus_first, focus_of, workspace_view
from keel.engine.ports import ToolCall, ToolResult
from keel.engine.records import ModelCall
from keel.engine.replies import Citation, TaskPlan
from keel.engine.settings import EngineSettings
from tests.unit.engine.doubles import ScriptedClient
from tests.unit.engine.test_exploration import Tools


def test_focus_files_come_first_and_unknown_or_invalid_ones_are_ignored() -> None:
    listing = ["a.py", "b.py", "src/c.py"]
    assert focus_first(listing, ["src/c.py", "./b.py", "../x", "missing.py", "src/c.py"]) == [
        "src/c.py",
        "b.py",
        "a.py",
    ]
    assert focus_first(listing, []) == listing
    assert focus_of(None) == ()
    assert focus_of(PlanScope(max_nodes=1, must_own=("b.py",))) == ("b.py",)


async def test_the_focus_file_is_listed_even_past_the_listing_limit(tmp_path: Path) -> None:
    for n in range(LISTING_LIMIT + 20):
        (tmp_path / f"f{n:04}.txt").write_text("x")
    last = f"f{LISTING_LIMIT + 19:04}.txt"
    plain = await workspace_view(tmp_path, [])
    assert last not in plain.listing and len(plain.listing) == LISTING_LIMIT
    focused = await workspace_view(tmp_path, [], focus=[last])
    assert focused.listing[0] == last and len(focused.listing) == LISTING_LIMIT


def test_citations_are_checked_against_the_files(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("one\ntwo")  # no final newline: still two lines
    (tmp_path / "empty.py").write_text("")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("[core]\n")
    cites = [
        Citation(path="a.py", line=2),
        Citation(path="a.py", line=3),
        Citation(path="empty.py", line=1),
        Citation(path=".git/config", line=1),
        Citation(path="a.py\\..\\x", line=1),
    ]
    kept, dropped = check_citations(tmp_path, cites)
    assert kept == [Citation(path="a.py", line=2)]
    reasons = [d.reason for d in dropped]
    assert reasons[0] == "a.py has only 2 lines"
    assert reasons[1] == "empty.py has only 0 lines"
    assert ".git/ is reserved" in reasons[2]
    assert "use '/' separators" in reasons[3]


def test_plan_markdown_orders_nodes_so_dependencies_come_first() -> None:
    plan = TaskPlan.model_validate(
        {
            "nodes": [
                {
                    "id": "t",
                    "title": "Tests",
                    "kind": "unit_test",
                    "owns": ["t.py"],
                    "depends_on": ["c"],
                },
                {
                    "id": "c",
                    "title": "Code",
                    "kind": "code",
                    "owns": ["c.py"],
                    "contract": {"symbols": ["run"], "forbidden": ["TODO"]},
                },
                {"id": "s", "title": "Setup", "kind": "command", "commands": ["make"]},
            ]
        }
    )
    text = plan_markdown("Do it", plan)
    assert text.index("## c: Code") < text.index("## t: Tests")
    assert "- defines: `run`" in text and "- must not contain: `TODO`" in text
    assert "- commands: `make`" in text and "- owns: -" in text


def test_explanation_markdown_links_sources_when_asked() -> None:
    explained = Explained("Why?", "Because.", (Citation(path="a.py", line=3),))
    assert "- [a.py:3](file:///w/a.py#L3)" in explanation_markdown(
        explained, lambda p, n: f"file:///w/{p}#L{n}"
    )
    assert "- a.py:3" in explanation_markdown(explained)
    assert "Dropped" not in explanation_markdown(explained)


async def test_plan_mode_asks_the_architect_with_the_focus_first(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("")
    (tmp_path / "z.py").write_text("")
    reply = {"nodes": [{"id": "fix", "title": "Fix", "kind": "code", "owns": ["z.py"]}]}
    client = ScriptedClient([json.dumps(reply)])
    modes = ReadOnlyModes(
        tmp_path,
        dict.fromkeys(Tier, client),
        [],
        EngineSettings(),
        scope=PlanScope(max_nodes=1, must_own=("z.py",)),
    )
    plan = await modes.plan("fix z")
    assert [n.id for n in plan.nodes] == ["fix"]
    (request,) = client.requests
    assert request.tier is Tier.ARCHITECT and request.schema_name == "task_plan"
    assert request.prompt.index("  z.py") < request.prompt.index("  a.py")


async def test_the_ephemeral_store_replays_a_step_and_keeps_nothing_else() -> None:
    store = EphemeralStore("s")
    call = ModelCall(tier="architect", model="m", ok=True)
    await store.finish_step("model:architect:-:1", {"text": "{}"}, call)
    assert await store.step_result("model:architect:-:1") == {"text": "{}"}
    assert await store.node_states() == {}
    assert (await store.call_totals()).calls == 1
    assert store.session_id == "s"


async def test_explain_never_shows_secret_files_or_files_outside_the_workspace(
    tmp_path: Path,
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (tmp_path / "private.txt").write_text("class Leak: pass  # OUTSIDE-CONTENT\n")
    (ws / "notes.py").symlink_to(tmp_path / "private.txt")
    (ws / ".env").write_text("class Leak: TOKEN = 'ENV-CONTENT'\n")
    (ws / "server.pem").write_text("class Leak: PEM-CONTENT\n")
    (ws / "leak.py").write_text("class Leak:\n    pass\n")
    reply = {"answer": "It leaks nothing.", "citations": [{"path": "leak.py", "line": 1}]}
    client = ScriptedClient([json.dumps(reply)])
    modes = ReadOnlyModes(ws, dict.fromkeys(Tier, client), [], EngineSettings())
    explained = await modes.explain("What is `Leak` in notes.py, .env and server.pem?")
    assert [(c.path, c.line) for c in explained.citations] == [("leak.py", 1)]
    (request,) = client.requests
    assert request.schema_name == "explanation"
    assert "1| class Leak:" in request.prompt  # the real definition is shown
    for content in ("OUTSIDE-CONTENT", "ENV-CONTENT", "PEM-CONTENT"):
        assert content not in request.prompt


def test_secret_looking_names() -> None:
    from keel.engine.modes import secret_looking

    for path in (".env", "app/.env.local", "id_rsa", "certs/server.pem", "a/credentials.json"):
        assert secret_looking(path), path
    for path in ("environment.py", "src/keys.py", "secrets_test_helper.py", "README.md"):
        assert not secret_looking(path), path


async def test_explain_of_a_bare_symbol_shows_the_file_defining_it(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("x = 1\n\n\nasync def normalize(path):\n    return path\n")
    reply = {"answer": "Normalises.", "citations": [{"path": "b.py", "line": 4}]}
    client = ScriptedClient([json.dumps(reply)])
    modes = ReadOnlyModes(tmp_path, dict.fromkeys(Tier, client), [], EngineSettings())
    explained = await modes.explain("paths.normalize")
    assert explained.citations == (Citation(path="b.py", line=4),)
    (request,) = client.requests
    assert "4| async def normalize(path):" in request.prompt
    assert "import b" not in request.prompt  # a.py does not define it


class RefusingTools(Tools):
    """Opens anything but ``.git/`` paths, which it refuses as the real policy does."""

    async def call(self, name: str, arguments: Mapping[str, Any], limit: int) -> ToolResult:
        if str(arguments.get("path", "")).startswith(".git/"):
            return ToolResult("refused: .git/config: .git/ is git's own data\nand more", True)
        return await super().call(name, arguments, limit)


async def test_explain_explores_and_reports_each_call_redacted(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    secret = "sk-secret-value-123456"
    calls = [
        ToolCall("c1", "open_file", {"path": "a.py", "note": f"key {secret}"}),
        ToolCall("c2", "open_file", {"path": ".git/config"}),
    ]
    reply = {"answer": "One.", "citations": [{"path": "a.py", "line": 1}]}
    client = ScriptedClient([calls, json.dumps(reply)])
    heard: list[Explored] = []
    modes = ReadOnlyModes(
        tmp_path,
        dict.fromkeys(Tier, client),
        [],
        EngineSettings(explore_turns=2, explore_tokens=500),
        secrets={"OPENAI_API_KEY": secret},
        explorer=RefusingTools(),
    )
    explained = await modes.explain("what is x?", on_explore=heard.append)
    first, second = client.requests
    assert [t.name for t in first.tools] == ["open_file"]
    assert "up to 2 replies of tool calls and 500 tokens" in first.prompt
    assert second.turns[0].results[1].startswith("refused: .git/config")
    assert explained.explored == tuple(heard)
    opened, refused = heard
    assert opened.arguments == {"path": "a.py", "note": "key [redacted]"}
    assert not opened.refused and opened.chars == 40 and opened.reason == ""
    assert refused.refused and refused.reason == ".git/config: .git/ is git's own data"
    assert refused.line() == (
        'open_file(path=".git/config"): refused: .git/config: .git/ is git\'s own data'
    )
    assert opened.line() == 'open_file(path="a.py", note="key [redacted]"): 40 chars'
    assert explained.as_dict()["explore"][1]["refused"] is True


async def test_modes_offer_no_tools_when_a_budget_is_zero(tmp_path: Path) -> None:
    plan_reply = {"nodes": [{"id": "fix", "title": "Fix", "kind": "code", "owns": ["a.py"]}]}
    for settings in (EngineSettings(explore_turns=0), EngineSettings(explore_tokens=0)):
        client = ScriptedClient([json.dumps(plan_reply), '{"answer": "-", "citations": []}'])
        tools = Tools()
        modes = ReadOnlyModes(tmp_path, dict.fromkeys(Tier, client), [], settings, explorer=tools)
        await modes.plan("fix a")
        explained = await modes.explain("why?")
        assert [r.tools for r in client.requests] == [(), ()]
        assert "read-only tools" not in client.requests[0].prompt + client.requests[1].prompt
        assert explained.explored == () and tools.ran == []


def test_an_explored_line_escapes_what_a_terminal_would_obey() -> None:
    call = Explored("open\x1b[2Jfile", {"path": "a\nb\x1b[31m"}, 0, True, "a\rb\x07: nope")
    line = call.line()
    assert line == 'open\\x1b[2Jfile(path="a\\nb\\u001b[31m"): refused: a\\rb\\x07: nope'
    assert not any(ord(char) < 32 for char in line)
