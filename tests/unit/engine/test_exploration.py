"""The gateway's exploration loop: tool turns, their steps, the budget, and resume."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from keel.engine.gateway import Exploration
from keel.engine.models import Tier
from keel.engine.ports import ToolCall, ToolResult, ToolSpec
from keel.engine.replies import TaskPlan
from tests.unit.engine.doubles import RecordingStore, ScriptedClient, make_gateway

PLAN = (
    '{"nodes": [{"id": "n1", "title": "fix", "kind": "code", "owns": ["a.py"], '
    '"depends_on": [], "context": [], "commands": []}]}'
)


class Tools:
    """Exploration tools that echo their call, and remember every call they ran."""

    def __init__(self, size: int = 40) -> None:
        self.size = size
        self.ran: list[tuple[str, dict[str, Any], int]] = []

    def specs(self) -> Sequence[ToolSpec]:
        return (ToolSpec("open_file", "open", {"type": "object"}),)

    async def call(self, name: str, arguments: Mapping[str, Any], limit: int) -> ToolResult:
        self.ran.append((name, dict(arguments), limit))
        return ToolResult(f"{name} {arguments.get('path')} ".ljust(self.size, "x")[:limit])


def opens(*paths: str) -> list[ToolCall]:
    return [ToolCall(f"c{i}", "open_file", {"path": p}) for i, p in enumerate(paths)]


async def ask(gateway: Any, explore: Exploration) -> Any:
    return await gateway.ask(
        Tier.ARCHITECT,
        TaskPlan,
        system="sys",
        prompt="plan",
        node_id=None,
        attempt=1,
        explore=explore,
    )


async def test_tool_turns_feed_results_back_until_the_model_answers() -> None:
    client = ScriptedClient([opens("a.py", "b.py"), opens("c.py"), PLAN])
    store = RecordingStore()
    tools = Tools()
    seen: list[Mapping[str, Any]] = []

    async def on_call(record: Mapping[str, Any]) -> None:
        seen.append(record)

    reply = await ask(make_gateway(client, store), Exploration(tools, 5, 1000, on_call=on_call))
    assert reply.value is not None and reply.value.nodes[0].owns == ["a.py"]
    assert [r.turn for r in client.requests] == [1, 2, 3]
    assert [len(r.turns) for r in client.requests] == [0, 1, 2]
    last = client.requests[-1]
    assert [c.arguments["path"] for c in last.turns[0].calls] == ["a.py", "b.py"]
    assert last.turns[1].results[0].startswith("open_file c.py")
    assert not any(r.must_answer for r in client.requests)
    assert [r.headers().get("X-Keel-Turn") for r in client.requests] == [None, "2", "3"]
    assert list(store.results) == [
        "model:architect:-:1",
        "tool:architect:-:1:turn1:1",
        "tool:architect:-:1:turn1:2",
        "model:architect:-:1:turn2",
        "tool:architect:-:1:turn2:1",
        "model:architect:-:1:turn3",
    ]
    assert store.results["tool:architect:-:1:turn1:2"]["arguments"] == {"path": "b.py"}
    assert [(r["tool"], r["chars"], r["refused"]) for r in seen] == [("open_file", 40, False)] * 3
    assert len(store.model_calls) == 3


async def test_a_spent_turn_budget_tells_the_model_and_withholds_the_tools() -> None:
    client = ScriptedClient([opens("a.py"), opens("b.py"), PLAN])
    tools = Tools()
    reply = await ask(make_gateway(client, RecordingStore()), Exploration(tools, 2, 1000))
    assert reply.value is not None
    assert [r.must_answer for r in client.requests] == [False, False, True]
    assert "exploration budget is spent (2 tool turns" in client.requests[-1].notice
    assert "Answer now with the task_plan" in client.requests[-1].notice
    assert len(tools.ran) == 2


async def test_a_spent_token_budget_cuts_results_and_then_stops_exploring() -> None:
    client = ScriptedClient([opens("a.py", "b.py", "c.py"), PLAN])
    tools = Tools(size=300)
    store = RecordingStore()
    reply = await ask(make_gateway(client, store), Exploration(tools, 5, 100))
    assert reply.value is not None
    # 100 tokens = 400 characters: the first result whole, the second cut, the third refused.
    assert [limit for _, _, limit in tools.ran] == [400, 100]
    assert store.results["tool:architect:-:1:turn1:3"]["refused"] is True
    assert client.requests[-1].must_answer


async def test_tool_calls_after_the_budget_is_spent_are_an_invalid_reply() -> None:
    client = ScriptedClient([opens("a.py"), opens("b.py")])
    reply = await ask(make_gateway(client, RecordingStore()), Exploration(Tools(), 1, 1000))
    assert reply.value is None
    assert "exploration budget is spent: answer with a task_plan" in (reply.error or "")


async def test_resume_replays_model_and_tool_steps_without_a_call() -> None:
    store = RecordingStore()
    first = ScriptedClient([opens("a.py"), opens("b.py"), RuntimeError("killed")])
    tools = Tools()
    try:
        await ask(make_gateway(first, store), Exploration(tools, 5, 1000))
    except RuntimeError:
        pass
    assert len(first.requests) == 3 and len(tools.ran) == 2
    again = ScriptedClient([PLAN])
    reply = await ask(make_gateway(again, store), Exploration(tools, 5, 1000))
    assert reply.value is not None
    assert len(tools.ran) == 2  # no tool ran twice
    assert [r.turn for r in again.requests] == [3]  # only the unanswered turn is asked
    assert [c.arguments["path"] for t in again.requests[0].turns for c in t.calls] == [
        "a.py",
        "b.py",
    ]


async def test_tool_results_are_redacted_before_the_model_or_the_store_sees_them() -> None:
    class Leaky(Tools):
        async def call(self, name: str, arguments: Mapping[str, Any], limit: int) -> ToolResult:
            return ToolResult("token=sk-secret-value-123456 here")

    client = ScriptedClient([opens("a.py"), PLAN])
    store = RecordingStore()
    gateway = make_gateway(client, store, secrets={"OPENAI_API_KEY": "sk-secret-value-123456"})
    await ask(gateway, Exploration(Leaky(), 5, 1000))
    assert "sk-secret" not in client.requests[-1].turns[0].results[0]
    assert "sk-secret" not in str(store.results)


async def test_a_reply_with_too_many_calls_runs_only_the_first_sixteen() -> None:
    client = ScriptedClient([opens(*[f"f{i}.py" for i in range(20)]), PLAN])
    tools = Tools()
    store = RecordingStore()
    reply = await ask(make_gateway(client, store), Exploration(tools, 5, 100_000))
    assert reply.value is not None
    assert len(tools.ran) == 16
    results = client.requests[-1].turns[0].results
    assert len(results) == 20  # every call id gets its result
    assert list(results[16:]) == ["refused: at most 16 tool calls a reply"] * 4
    assert not any(step.endswith(":17") for step in store.results)


async def test_huge_arguments_are_clipped_in_the_record_not_for_the_tool() -> None:
    call = ToolCall("c1", "open_file", {"path": "a.py", "junk": "x" * 5000})
    client = ScriptedClient([[call], PLAN])
    tools = Tools()
    store = RecordingStore()
    await ask(make_gateway(client, store), Exploration(tools, 5, 1000))
    assert tools.ran[0][1]["junk"] == "x" * 5000
    recorded = store.results["tool:architect:-:1:turn1:1"]["arguments"]
    assert list(recorded) == ["_clipped"] and len(recorded["_clipped"]) == 1000


async def test_log_llm_keeps_what_the_model_read_in_each_turn() -> None:
    client = ScriptedClient([opens("a.py"), PLAN])
    store = RecordingStore()
    await ask(make_gateway(client, store, log_llm=True), Exploration(Tools(), 1, 1000))
    first, second = store.model_calls
    assert "[tool call]" not in str(first.prompt)
    assert '[tool call] open_file {"path": "a.py"}' in str(second.prompt)
    assert "[result]\nopen_file a.py" in str(second.prompt)
    assert "exploration budget is spent" in str(second.prompt)
    assert second.prompt_chars > first.prompt_chars


async def test_a_lazy_prompt_is_built_on_resume_only_for_the_turn_that_is_sent() -> None:
    """Killed during the exploration: the resume replays the recorded turns without the
    prompt, then builds it once for the unanswered turn, the same prompt as the first run's."""
    store, tools = RecordingStore(), Tools()
    built: list[str] = []

    async def prompt() -> str:
        built.append("plan")
        return "plan from the workspace view"

    first = ScriptedClient([opens("a.py"), opens("b.py"), RuntimeError("killed")])
    gateway = make_gateway(first, store)
    try:
        await gateway.ask(
            Tier.ARCHITECT,
            TaskPlan,
            system="sys",
            prompt=prompt,
            node_id=None,
            attempt=1,
            explore=Exploration(tools, 5, 1000),
        )
    except RuntimeError:
        pass
    assert len(built) == 1 and len(first.requests) == 3
    again = ScriptedClient([PLAN])
    reply = await make_gateway(again, store).ask(
        Tier.ARCHITECT,
        TaskPlan,
        system="sys",
        prompt=prompt,
        node_id=None,
        attempt=1,
        explore=Exploration(tools, 5, 1000),
    )
    assert reply.value is not None and len(built) == 2 and len(tools.ran) == 2
    [sent] = again.requests
    assert sent.turn == 3 and sent.prompt == first.requests[-1].prompt
    assert sent.prompt.startswith("plan from the workspace view")
