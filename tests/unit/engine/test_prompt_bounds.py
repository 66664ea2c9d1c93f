"""Prompt bounds and project instructions: every prompt fits, and every cut is stated."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from keel.engine import prompts
from keel.engine.bounds import bound_reason, cut_middle, fit_files
from keel.engine.gateway import Budget, ModelGateway
from keel.engine.guard import PromptFile
from keel.engine.instructions import (
    describe,
    instruction_path,
    load_instructions,
    show_instructions,
)
from keel.engine.models import Tier
from keel.engine.redaction import Redactor
from keel.engine.replies import PlanNode, Speculation
from tests.unit.engine.doubles import RecordingStore, ScriptedClient

REASON = bound_reason(2_000)


def _file(path: str, size: int) -> PromptFile:
    return PromptFile(path, "x" * size, "", size)


def test_files_that_fit_are_shown_whole_in_priority_order() -> None:
    groups, cuts = fit_files([[_file("a.py", 100)], [_file("b.py", 100)]], 1_000, REASON)
    assert [[f.text for f in g] for g in groups] == [["x" * 100], ["x" * 100]]
    assert cuts == []


def test_a_file_that_does_not_fit_is_shortened_then_the_rest_left_out() -> None:
    owned, context = [_file("own.py", 3_000)], [_file("big.txt", 50_000), _file("c.py", 10)]
    groups, cuts = fit_files([owned, context], 5_000, REASON)
    [own], [big, small] = groups
    assert own.text == "x" * 3_000  # the node's own file has priority
    assert big.text is not None and 400 <= len(big.text) < 2_000
    assert big.note.startswith("shortened to its first") and REASON in big.note
    assert small.text is None and small.note == f"left out (10 characters) {REASON}"
    assert cuts == [
        f"big.txt shortened to its first {len(big.text)} of 50000 characters",
        "c.py left out (10 characters)",
    ]


def test_cut_middle_keeps_both_ends_and_says_how_much_it_removed() -> None:
    text = "START" + "m" * 10_000 + "END"
    cut = cut_middle(text, 1_000, REASON)
    assert len(cut) <= 1_000
    assert cut.startswith("START") and cut.endswith("END")
    removed = int(cut.split("Keel cut ")[1].split(" ")[0])
    marker = cut[cut.index("\n[...") : cut.index("...]\n") + 5]
    assert len(cut) - len(marker) + removed == len(text)  # the count is exact
    assert REASON in cut
    assert cut_middle("short", 1_000, REASON) == "short"


def _node() -> PlanNode:
    return PlanNode.model_validate(
        {"id": "fix", "title": "Fix", "kind": "code", "owns": ["calc.py"], "context": ["big.txt"]}
    )


def test_the_actuator_prompt_fits_its_room_and_states_the_cut() -> None:
    owned = [PromptFile("calc.py", "def add(a, b):\n    return a + b\n", "", 33)]
    context = [_file("big.txt", 200_000)]
    prompt = prompts.actuator_prompt(
        "task",
        _node(),
        owned,
        context,
        [],
        "Correction: " + "e" * 50_000,
        definitions="def helper() -> int: ...  # util.py:3\n" * 2_000,
        room=8_000,
        reason=REASON,
    )
    assert len(prompt) <= 8_000
    assert "def add(a, b):" in prompt
    assert f"Cut {REASON}: big.txt shortened to its first" in prompt
    assert "definitions the owned files use from other files (outlines) left out" in prompt
    assert "Keel cut " in prompt  # the long correction is cut in its middle, saying so


def test_an_unbounded_actuator_prompt_is_unchanged_by_the_bound_logic() -> None:
    owned = [PromptFile("calc.py", None, "does not exist yet")]
    prompt = prompts.actuator_prompt("task", _node(), owned, [], [], None)
    assert "--- calc.py ---\n(does not exist yet)" in prompt and "Cut" not in prompt


async def test_the_gateway_opens_every_prompt_with_the_instructions_and_bounds_it() -> None:
    client = ScriptedClient(['{"hints": []}'] * 2)
    gateway = ModelGateway(
        dict.fromkeys(Tier, client),
        RecordingStore("s"),
        budget=Budget(),
        log_llm=False,
        redact=Redactor({}),
        max_prompt_tokens=2_000,
        instructions="Project instructions: X",
    )
    await gateway.ask(
        Tier.SPECULATOR, Speculation, system="sys", prompt="small", node_id=None, attempt=1
    )
    await gateway.ask(
        Tier.VERIFIER, Speculation, system="sys", prompt="p" * 50_000, node_id=None, attempt=2
    )
    small, huge = (r.prompt for r in client.requests)
    assert small == "Project instructions: X\n\nsmall"
    assert huge.startswith("Project instructions: X") and len("sys") + len(huge) <= 8_000
    assert "to fit [context] max_prompt_tokens = 2000" in huge
    assert gateway.prompt_room("sys") == 8_000 - 3 - len("Project instructions: X") - 2


def test_instructions_are_named_bounded_and_in_order(tmp_path: Path) -> None:
    (tmp_path / "AGENTS.md").write_text("Use tabs.\n")
    (tmp_path / ".keel").mkdir()
    (tmp_path / ".keel" / "instructions.md").write_text("Never touch setup.py.\n" * 1_000)
    found = load_instructions(tmp_path, None, 8_000)
    agents, keel = found.files
    assert (agents.path, agents.text, agents.note) == ("AGENTS.md", "Use tabs.\n", "")
    assert keel.path == ".keel/instructions.md" and keel.text is not None
    assert len(agents.text) + len(keel.text) <= 2_000  # a quarter of the bound
    assert "shortened" in keel.note and "instructions' share" in keel.note
    block = found.block()
    assert block.startswith("Project instructions (AGENTS.md, .keel/instructions.md)")
    assert "--- AGENTS.md ---\nUse tabs." in block
    assert describe(found)[0] == "AGENTS.md (10 characters): shown whole"


def test_a_binary_instructions_file_is_left_out_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "AGENTS.md").write_bytes(b"\x7fELF\0\0\0binary")
    found = load_instructions(tmp_path, None, 8_000)
    [agents] = found.files
    assert agents.text is None and agents.note.startswith("binary")
    assert "--- AGENTS.md ---\n(binary" in found.block()
    assert found.warnings == ("instructions AGENTS.md not shown: binary (13 bytes); not shown",)


def test_no_instruction_files_means_no_block(tmp_path: Path) -> None:
    found = load_instructions(tmp_path, None, 8_000)
    assert found.block() == "" and found.files == () and found.warnings == ()
    assert describe(found) == ["(none: no AGENTS.md or .keel/instructions.md in the workspace)"]


def test_a_configured_file_that_is_missing_or_escapes_is_a_warning(tmp_path: Path) -> None:
    assert load_instructions(tmp_path, "docs/rules.md", 8_000).warnings == (
        "[context] instructions: docs/rules.md does not exist",
    )
    outside = tmp_path.parent / "outside.md"
    outside.write_text("secret rules")
    (tmp_path / "rules.md").symlink_to(outside)
    found = load_instructions(tmp_path, "rules.md", 8_000)
    assert found.files[0].text is None and "outside the workspace" in found.files[0].note


@pytest.mark.parametrize(
    "raw", ["/etc/passwd", "~/.ssh/config", "../rules.md", ".git/config", ".env", ""]
)
def test_an_unsafe_configured_instructions_path_is_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        instruction_path(raw)


def test_a_configured_file_under_keel_is_allowed(tmp_path: Path) -> None:
    (tmp_path / ".keel").mkdir()
    (tmp_path / ".keel" / "rules.md").write_text("Be brief.")
    found = load_instructions(tmp_path, ".keel/rules.md", 8_000)
    assert [f.path for f in found.files] == [".keel/rules.md"]


def test_keel_map_can_show_the_instructions(tmp_path: Path) -> None:
    (tmp_path / "AGENTS.md").write_text("r" * 5_000)
    assert show_instructions(tmp_path, None, 2_000) == [
        "AGENTS.md (5000 characters): shortened to its first 2000 of 5000 characters, "
        "the instructions' share of [context] max_prompt_tokens"
    ]


@pytest.mark.parametrize("seed", range(8))
def test_any_mix_of_files_hints_and_correction_fits_the_room(seed: int) -> None:
    rng = random.Random(seed)
    owned = [_file(f"own{i}.py", rng.randint(0, 20_000)) for i in range(rng.randint(1, 40))]
    context = [_file(f"ctx{i}.py", rng.randint(0, 20_000)) for i in range(rng.randint(0, 60))]
    room = rng.randint(6_000, 60_000)
    prompt = prompts.actuator_prompt(
        "t" * rng.randint(1, 30_000),
        _node(),
        owned,
        context,
        ["hint " * rng.randint(1, 50)] * rng.randint(0, 20),
        "c" * rng.randint(0, 40_000) or None,
        definitions="d" * rng.randint(0, 30_000),
        room=room,
        reason=REASON,
    )
    assert len(prompt) <= room
    cut_line = next((line for line in prompt.splitlines() if line.startswith("Cut ")), "")
    for file in [*owned, *context]:
        whole = f"--- {file.path} ---\n{file.text}\n" in prompt + "\n"
        # Never silent: a file not shown whole is named in the sentence of cuts.
        assert whole or f" {file.path} " in cut_line, file.path


def test_an_agents_file_linking_to_a_secret_or_into_git_is_never_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("API_KEY=sk-live-123456789\n")
    (tmp_path / "AGENTS.md").symlink_to(tmp_path / ".env")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("token = sk-live-123456789\n")
    (tmp_path / ".keel").mkdir()
    (tmp_path / ".keel" / "instructions.md").symlink_to(tmp_path / ".git" / "config")
    found = load_instructions(tmp_path, None, 8_000)
    assert [(f.path, f.text) for f in found.files] == [
        ("AGENTS.md", None),
        (".keel/instructions.md", None),
    ]
    assert [f.note for f in found.files] == [
        "refused: leads to .env",
        "refused: leads to .git/config",
    ]
    assert "sk-live" not in found.block()
