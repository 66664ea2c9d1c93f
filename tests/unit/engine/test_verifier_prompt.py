"""The verifier tier sees the files the attempt left, not only their names.

Run 10's slugify: shown only the evidence, the 1.5B verifier analysed code it had not seen
("the patch removes the entire file") and the next attempt deleted its test on that advice.
"""

from __future__ import annotations

from pathlib import Path

from keel.engine import prompts
from keel.engine.gateway import Budget, ModelGateway
from keel.engine.guard import DELETED, changed_for_prompt
from keel.engine.models import NodeState, Tier
from keel.engine.node import NodeRunner
from keel.engine.redaction import Redactor
from keel.engine.replies import PlanNode
from tests.unit.engine.doubles import KeyedClient, RecordingStore, bundle_reply
from tests.unit.engine.test_engine_in_memory import Replies, node_context, plan_node
from tests.unit.engine.test_progress import FIXED, OWNS, TEST

BROKEN = "def add(a, b):\n    return SYNTAX  # the line the verifier must see\n"


def verifier_prompts(client: KeyedClient) -> list[str]:
    return [r.prompt for r in client.requests if r.tier is Tier.VERIFIER]


async def test_the_verifier_is_shown_the_files_as_the_attempt_left_them(tmp_path: Path) -> None:
    replies: Replies = {
        ("actuator", "n1", 1): bundle_reply({"calc.py": BROKEN, "test_calc.py": TEST}),
        ("verifier", "n1", 1): {"verdict": "unstable", "analysis": "SYNTAX", "fix_hints": []},
        ("actuator", "n1", 2): bundle_reply({"calc.py": FIXED}),
    }
    ctx, _, client = node_context(tmp_path, replies)
    assert await NodeRunner(ctx, plan_node(owns=OWNS)).run() is NodeState.COMMITTED
    (prompt,) = verifier_prompts(client)
    assert "Files as the attempt left them:" in prompt
    assert "--- calc.py ---" in prompt and "return SYNTAX  # the line the verifier" in prompt
    assert "assert add(1, 2) == 3" in prompt


def test_a_deleted_file_says_so_and_a_secrets_path_is_never_shown() -> None:
    files = changed_for_prompt({"gone.py": None, ".env": b"KEY=1\n", "a.py": b"x = 1\n"}, 100)
    by_path = {f.path: f for f in files}
    assert by_path["gone.py"].note == DELETED and by_path["gone.py"].text is None
    assert by_path["a.py"].text == "x = 1\n"
    (secret,) = [f for f in files if f.path not in ("gone.py", "a.py")]
    assert secret.text is None and secret.note.startswith("refused")


def test_binary_and_long_files_are_shown_as_notes_and_cut() -> None:
    files = changed_for_prompt({"b.bin": b"\0\1\2", "long.py": b"x" * 500}, 100)
    by_path = {f.path: f for f in files}
    assert by_path["b.bin"].text is None and "binary" in by_path["b.bin"].note
    assert by_path["long.py"].text == "x" * 100 and "shortened" in by_path["long.py"].note


def test_the_files_are_cut_to_fit_the_bound_saying_so() -> None:
    node = PlanNode.model_validate({"id": "n1", "title": "n1", "kind": "code", "owns": ["big.py"]})
    files = changed_for_prompt({"big.py": b"y = 1\n" * 2_000}, 64_000)
    prompt = prompts.verifier_prompt(
        "task", node, "files big.py", [], {"v": 1.0}, files, room=3_000, reason="to fit X"
    )
    assert len(prompt) <= 3_000
    assert "Files as the attempt left them:" in prompt and "Cut to fit X" in prompt


async def test_the_verifier_prompt_fits_the_room_the_gateway_gives_it() -> None:
    """A large file is cut to the verifier's share of ``max_prompt_tokens``; the evidence
    stays."""
    client = KeyedClient({})
    store = RecordingStore("s")
    gateway = ModelGateway(
        dict.fromkeys(Tier, client),
        store,
        budget=Budget(),
        log_llm=False,
        redact=Redactor({}),
        max_prompt_tokens=1_000,
    )
    room = gateway.prompt_room(prompts.VERIFIER_SYSTEM)
    assert room is not None
    node = PlanNode.model_validate({"id": "n1", "title": "n1", "kind": "code", "owns": ["a.py"]})
    files = changed_for_prompt({"a.py": b"z = 2\n" * 5_000}, room)
    prompt = prompts.verifier_prompt("t", node, "files a.py", [], {"v": 1.0}, files, room=room)
    assert len(prompt) <= room and "Evidence:" in prompt
