"""The exploration loop through the real openai and anthropic SDKs and through ``replay:``.

The fake server answers each turn from transcript entries with a ``turn`` and ``tool_calls``;
what is asserted is what a real API would receive: the tools, the tool choice, the calls and
their results echoed back in the provider's own message shapes, and the budget notice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keel.engine.gateway import Exploration, ModelGateway
from keel.engine.models import Tier
from keel.engine.ports import ConfigError, ModelClient
from keel.engine.replies import TaskPlan
from keel.providers.anthropic_provider import AnthropicClient
from keel.providers.openai_provider import OpenAIClient
from keel.providers.replay import ReplayClient
from tests.fakes.model_server import FakeModelServer
from tests.unit.engine.doubles import RecordingStore, make_gateway
from tests.unit.engine.test_exploration import Tools
from tests.unit.providers.helpers import fast_settings

PLAN = {
    "nodes": [
        {"id": "fix", "title": "Fix it", "kind": "code", "owns": ["src/a.py"], "depends_on": []}
    ]
}
EXPLORING = [
    {
        "tier": "architect",
        "attempt": 1,
        "turn": 1,
        "tool_calls": [
            {"name": "open_file", "arguments": {"path": "src/a.py"}},
            {"name": "open_file", "arguments": {"path": "src/b.py"}},
        ],
    },
    {
        "tier": "architect",
        "attempt": 1,
        "turn": 2,
        "tool_calls": [{"name": "open_file", "arguments": {"path": "src/c.py"}}],
    },
    {"tier": "architect", "attempt": 1, "reply": PLAN},
]


@pytest.fixture
def fake() -> Iterator[FakeModelServer]:
    with FakeModelServer(EXPLORING) as srv:
        yield srv


def client_for(provider: str, server: FakeModelServer) -> ModelClient:
    if provider == "openai":
        env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.openai_base_url}
        return OpenAIClient("openai", "gpt-4.1", fast_settings(env))
    env = {"ANTHROPIC_API_KEY": "sk-ant-test", "ANTHROPIC_BASE_URL": server.anthropic_base_url}
    return AnthropicClient("claude-haiku-4-5", fast_settings(env))


async def plan(gateway: ModelGateway, tools: Tools, turns: int) -> Any:
    return await gateway.ask(
        Tier.ARCHITECT,
        TaskPlan,
        system="sys",
        prompt="plan it",
        node_id=None,
        attempt=1,
        explore=Exploration(tools, turns, 1000),
    )


def gateway_for(client: ModelClient) -> ModelGateway:
    return make_gateway(client, RecordingStore())  # type: ignore[arg-type]


async def test_openai_tool_loop(fake: FakeModelServer) -> None:
    tools = Tools()
    reply = await plan(gateway_for(client_for("openai", fake)), tools, 5)
    assert reply.value is not None and reply.value.nodes[0].owns == ["src/a.py"]
    assert [args["path"] for _, args, _ in tools.ran] == ["src/a.py", "src/b.py", "src/c.py"]
    first, second, last = (r.body for r in fake.requests)
    for body in (first, second, last):
        assert body["response_format"]["json_schema"]["name"] == "task_plan"
        assert body["tool_choice"] == "auto"
        assert [t["function"]["name"] for t in body["tools"]] == ["open_file"]
    assert [r.headers.get("X-Keel-Turn") for r in fake.requests] == [None, "2", "3"]
    messages = last["messages"]
    assert [m["role"] for m in messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
        "tool",
    ]
    calls = messages[2]["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [
        {"path": "src/a.py"},
        {"path": "src/b.py"},
    ]
    assert [m["tool_call_id"] for m in messages[3:5]] == [c["id"] for c in calls]
    assert messages[4]["content"].startswith("open_file src/b.py")


async def test_anthropic_tool_loop(fake: FakeModelServer) -> None:
    tools = Tools()
    reply = await plan(gateway_for(client_for("anthropic", fake)), tools, 5)
    assert reply.value is not None and reply.value.nodes[0].id == "fix"
    assert len(tools.ran) == 3
    last = fake.requests[-1].body
    assert last["tool_choice"] == {"type": "any"}
    assert [t["name"] for t in last["tools"]] == ["open_file", "task_plan"]
    messages = last["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    uses = messages[1]["content"]
    assert [u["input"] for u in uses] == [{"path": "src/a.py"}, {"path": "src/b.py"}]
    results = messages[2]["content"]
    assert [r["tool_use_id"] for r in results] == [u["id"] for u in uses]
    assert results[0]["content"].startswith("open_file src/a.py")


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_spent_budget_forces_the_answer(fake: FakeModelServer, provider: str) -> None:
    tools = Tools()
    reply = await plan(gateway_for(client_for(provider, fake)), tools, 1)
    assert reply.value is not None  # turn 2 recorded tool calls, but the model must answer
    assert len(tools.ran) == 2
    last = fake.requests[-1].body
    if provider == "openai":
        assert last["tool_choice"] == "none"
        notice = last["messages"][-1]
        assert notice["role"] == "user"
    else:
        assert last["tool_choice"] == {"type": "tool", "name": "task_plan"}
        notice = last["messages"][-1]["content"][-1]
        assert notice["type"] == "text"
    assert "exploration budget is spent" in json.dumps(notice)


async def test_replay_transcript_with_tool_calls(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in EXPLORING) + "\n")
    client = ReplayClient(str(path), fast_settings({}))
    tools = Tools()
    reply = await plan(gateway_for(client), tools, 5)
    assert reply.value is not None
    assert [args["path"] for _, args, _ in tools.ran] == ["src/a.py", "src/b.py", "src/c.py"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"tier": "architect", "attempt": 1, "tool_calls": [{"name": "x"}]}, 'needs its "turn"'),
        (
            {
                "tier": "architect",
                "attempt": 1,
                "turn": 1,
                "tool_calls": [{"name": "x"}],
                "reply": {},
            },
            "exclude each other",
        ),
        ({"tier": "architect", "attempt": 1, "turn": 0, "reply": {}}, '"turn" must be'),
        ({"tier": "architect", "attempt": 1, "turn": 1, "tool_calls": []}, "non-empty list"),
        (
            {
                "tier": "architect",
                "attempt": 1,
                "turn": 1,
                "tool_calls": [{"name": "x", "args": 1}],
            },
            "unknown key(s) args",
        ),
    ],
)
def test_malformed_tool_entries_name_the_line(
    tmp_path: Path, entry: dict[str, Any], message: str
) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(entry) + "\n")
    with pytest.raises(ConfigError, match="line 1") as caught:
        ReplayClient(str(path), fast_settings({}))
    assert message in str(caught.value)
