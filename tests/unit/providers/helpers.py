"""Shared helpers for the provider tests: a request factory, transcript entries, settings."""

from __future__ import annotations

import socket
from typing import Any

from keel.engine.models import Tier
from keel.engine.ports import ModelRequest
from keel.providers.base import ProviderSettings

SECRET = "sk-secret-123"

BUNDLE = {"writes": [{"path": "src/calc/core.py", "content": "def add(a, b):\n    return a + b\n"}]}
PLAN = {"nodes": [{"id": "node-1", "title": "Init", "kind": "command"}]}

ENTRIES: list[dict[str, Any]] = [
    {"keel_transcript": 1, "task": "provider tests"},
    {"tier": "architect", "node": None, "attempt": 1, "reply": PLAN},
    {
        "tier": "actuator",
        "node": "node-2",
        "attempt": 1,
        "reply": BUNDLE,
        "usage": {"input_tokens": 1000, "output_tokens": 500},
    },
    {"tier": "actuator", "node": "node-2", "attempt": 2, "text": "{not json"},
    {"tier": "verifier", "node": "node-2", "attempt": 1, "text": ""},
]


def make_request(
    tier: Tier = Tier.ACTUATOR,
    node: str | None = "node-2",
    attempt: int = 1,
    schema_name: str = "artifact_bundle",
) -> ModelRequest:
    return ModelRequest(
        tier=tier,
        schema_name=schema_name,
        schema={"type": "object", "properties": {"writes": {"type": "array"}}},
        system="You are the actuator.",
        prompt="Write the calculator.",
        session_id="sess-1",
        node_id=node,
        attempt=attempt,
    )


def fast_settings(env: dict[str, str], **overrides: Any) -> ProviderSettings:
    """Settings with tiny backoff so retry tests take milliseconds."""
    values: dict[str, Any] = {
        "env": env,
        "timeout_s": 5.0,
        "max_retries": 2,
        "retry_base_delay_s": 0.01,
        "retry_max_delay_s": 0.02,
    }
    values.update(overrides)
    return ProviderSettings(**values)


def refused_url() -> str:
    """A loopback URL where nothing listens (the port was just free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
