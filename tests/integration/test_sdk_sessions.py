"""Must-show 2 and 3: the demo session through the real openai and anthropic SDKs.

The `keel` CLI runs as a subprocess against the local fake model server (tests/fakes), which
answers from the demo's recorded replies by the X-Keel-* headers and records every request.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fakes.model_server import FakeModelServer, RecordedRequest
from tests.integration.conftest import demo_entries, json_events, run_keel

SCHEMA_BY_TIER = {
    "architect": "task_plan",
    "actuator": "artifact_bundle",
    "verifier": "verifier_report",
    "speculator": "speculation",
}


def _check_headers(request: RecordedRequest, session: str) -> str:
    headers = request.headers
    assert headers["X-Keel-Session"] == session
    tier = headers["X-Keel-Tier"]
    assert tier in SCHEMA_BY_TIER
    assert int(headers["X-Keel-Attempt"]) >= 1
    if tier in ("actuator", "verifier"):
        assert headers["X-Keel-Node"].startswith("node-")
    return tier


def _prompt_text(request: RecordedRequest) -> str:
    return json.dumps(request.body)


def _actuator_request(requests: list[RecordedRequest], node: str, attempt: int) -> RecordedRequest:
    return next(
        r
        for r in requests
        if r.headers.get("X-Keel-Tier") == "actuator"
        and r.headers.get("X-Keel-Node") == node
        and r.headers.get("X-Keel-Attempt") == str(attempt)
    )


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_demo_session_through_the_real_sdk(provider: str, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    with FakeModelServer(demo_entries()) as server:
        if provider == "openai":
            env = {
                "OPENAI_API_KEY": "sk-test-not-a-real-key",
                "OPENAI_BASE_URL": server.openai_base_url,
            }
            model = "openai:gpt-4.1"
        else:
            env = {
                "ANTHROPIC_API_KEY": "sk-ant-test-not-a-real-key",
                "ANTHROPIC_BASE_URL": server.anthropic_base_url,
            }
            model = "anthropic:claude-sonnet-4-5"
        proc = run_keel(
            "agent",
            "-y",
            "--json",
            "--model",
            model,
            "-w",
            str(workspace),
            "Create a Python calculator package",
            env=env,
        )
        requests = server.requests
    events = json_events(proc.stdout)
    assert proc.returncode == 0, proc.stderr + proc.stdout[-2000:]
    session = events[0]["session"]
    assert events[-1]["outcome"] == "success"
    assert len(requests) == 8  # plan, speculation, 5 actuator attempts, 1 verifier analysis
    for request in requests:
        tier = _check_headers(request, session)
        body = request.body
        if provider == "openai":
            assert request.path == "/v1/chat/completions"
            assert body["response_format"]["type"] == "json_schema"
            assert body["response_format"]["json_schema"]["name"] == SCHEMA_BY_TIER[tier]
            if tier == "architect":  # the architect may explore first: read-only tools
                assert body["tool_choice"] == "auto"
                assert "open_file" in [tool["function"]["name"] for tool in body["tools"]]
            else:
                assert "tools" not in body
        elif tier == "architect":  # exploration tools, then the answer tool; one must be used
            assert request.path == "/v1/messages"
            assert body["tool_choice"] == {"type": "any"}
            assert body["tools"][-1]["name"] == "task_plan"
            assert "open_file" in [tool["name"] for tool in body["tools"]]
        else:
            assert request.path == "/v1/messages"
            assert body["tool_choice"] == {"type": "tool", "name": SCHEMA_BY_TIER[tier]}
            assert [tool["name"] for tool in body["tools"]] == [SCHEMA_BY_TIER[tier]]
    # Must-show 2: the correction request quotes the failing test id; the first did not.
    first = _prompt_text(_actuator_request(requests, "node-4", 1))
    second = _prompt_text(_actuator_request(requests, "node-4", 2))
    assert "tests/test_calculator.py::test_divide" not in first
    assert "tests/test_calculator.py::test_divide" in second
    assert "assert 3.5 == 3" in second
    finished = events[-1]["totals"]
    assert finished["calls"] == 8 and finished["input_tokens"] > 0 and finished["cost_usd"] > 0


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_negative_token_count_cannot_defeat_max_cost(provider: str, tmp_path: Path) -> None:
    """The plan's reply claims -10,000,000 input tokens: the session fails saying so, and the
    call is charged conservatively instead of paying back a budget."""
    workspace = tmp_path / "ws"
    with FakeModelServer(demo_entries()) as server:
        server.usage_next(-10_000_000, 50)
        if provider == "openai":
            env = {
                "OPENAI_API_KEY": "sk-test-not-a-real-key",
                "OPENAI_BASE_URL": server.openai_base_url,
            }
            model = "openai:gpt-4.1"
        else:
            env = {
                "ANTHROPIC_API_KEY": "sk-ant-test-not-a-real-key",
                "ANTHROPIC_BASE_URL": server.anthropic_base_url,
            }
            model = "anthropic:claude-sonnet-4-5"
        proc = run_keel(
            "agent",
            "-y",
            "--json",
            "--max-cost",
            "5",
            "--model",
            model,
            "-w",
            str(workspace),
            "Create a Python calculator package",
            env={**env, "HOME": str(tmp_path)},
        )
        asked = len(server.requests)
    events = json_events(proc.stdout)
    assert proc.returncode == 1, proc.stderr + proc.stdout[-2000:]
    assert "a negative input token count (-10000000)" in proc.stderr + proc.stdout
    finished = events[-1]
    assert finished["type"] == "session_finished" and finished["outcome"] == "failed", finished
    totals = finished["totals"]
    assert totals["cost_usd"] > 0 and totals["input_tokens"] > 0, finished
    assert asked == 1  # not retried
