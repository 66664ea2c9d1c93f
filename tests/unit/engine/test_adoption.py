"""Files no node owns (docs/explanation/plan-repair.md): with ``[engine] adopt_new_files``,
a node's bundle creating one adopts it (by default it is refused like any file outside
``owns``); another node's file, a committed file and a user's untracked file are still refused; a
command running a test file nobody wrote is not run, and the evidence says what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.engine import events as ev
from keel.engine.models import NodeState
from tests.unit.engine.doubles import (
    FakeRunner,
    MemoryLedger,
    MemoryStore,
    bundle_reply,
    node_spec,
    plan_reply,
)
from tests.unit.engine.test_engine_in_memory import GOOD, SESSION, Replies, make_engine, run

TEST = "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"


async def test_a_new_file_no_node_owns_is_adopted_by_the_node_writing_it(tmp_path: Path) -> None:
    store, ledger = MemoryStore(), MemoryLedger()
    replies: Replies = {
        ("architect", None, 1): plan_reply(node_spec("n1", ["calc.py"])),
        ("actuator", "n1", 1): bundle_reply({"calc.py": GOOD, "test_calc.py": TEST}),
    }
    engine, _, sink = make_engine(
        tmp_path, replies, adopt_new_files=True, store=store, ledger=ledger
    )
    result = await run(engine)
    assert result.outcome == "success"
    assert ledger.files["test_calc.py"] == TEST.encode()
    [adopted] = sink.of(ev.FileAdopted)
    assert (adopted.node, adopted.attempt, adopted.path) == ("n1", 1, "test_calc.py")
    [generated] = sink.of(ev.BundleGenerated)
    assert generated.problems == []
    plans = store.session(SESSION).plans
    assert plans[-1]["nodes"][0]["owns"] == ["calc.py", "test_calc.py"]  # recorded


async def test_by_default_a_new_file_no_node_owns_is_outside_owns(tmp_path: Path) -> None:
    replies: Replies = {
        ("architect", None, 1): plan_reply(node_spec("n1", ["calc.py"])),
        ("actuator", "n1", 1): bundle_reply({"calc.py": GOOD, "test_calc.py": TEST}),
        ("actuator", "n1", 2): bundle_reply({"calc.py": GOOD}),
    }
    ledger = MemoryLedger()
    engine, client, sink = make_engine(tmp_path, replies, ledger=ledger)
    assert (await run(engine)).outcome == "success"
    assert sink.of(ev.FileAdopted) == []
    first = sink.of(ev.BundleGenerated)[0]
    assert first.problems == ["test_calc.py is not owned by this node (owns: ['calc.py'])"]
    assert "test_calc.py" not in ledger.files
    [prompt] = [
        r.prompt
        for r in client.requests
        if (r.tier.value, r.node_id, r.attempt) == ("actuator", "n1", 1)
    ]
    assert "Write only these files: calc.py." in prompt and "no node owns" not in prompt


async def test_another_node_s_file_is_still_refused(tmp_path: Path) -> None:
    replies: Replies = {
        ("architect", None, 1): plan_reply(
            node_spec("n1", ["calc.py"]), node_spec("n2", ["report.py"], depends_on=["n1"])
        ),
        ("actuator", "n1", 1): bundle_reply({"calc.py": GOOD, "report.py": "x = 1\n"}),
        ("actuator", "n1", 2): bundle_reply({"calc.py": GOOD}),
        ("actuator", "n2", 1): bundle_reply({"report.py": "x = 2\n"}),
    }
    engine, _, sink = make_engine(tmp_path, replies, adopt_new_files=True)
    result = await run(engine)
    assert result.outcome == "success"
    assert sink.of(ev.FileAdopted) == []
    first = sink.of(ev.BundleGenerated)[0]
    assert first.problems == ["report.py is not owned by this node (owns: ['calc.py'])"]


async def test_a_committed_file_the_plan_never_named_is_refused(tmp_path: Path) -> None:
    ledger = MemoryLedger({"README.md": b"# mine\n"})
    replies: Replies = {
        ("architect", None, 1): plan_reply(node_spec("n1", ["calc.py"])),
        ("actuator", "n1", 1): bundle_reply({"calc.py": GOOD, "README.md": "# gone\n"}),
        ("actuator", "n1", 2): bundle_reply({"calc.py": GOOD}),
    }
    engine, _, sink = make_engine(tmp_path, replies, adopt_new_files=True, ledger=ledger)
    assert (await run(engine)).outcome == "success"
    assert sink.of(ev.FileAdopted) == []
    assert ledger.files["README.md"] == b"# mine\n"
    assert "README.md is not owned" in sink.of(ev.BundleGenerated)[0].problems[0]


async def test_a_user_s_untracked_file_is_never_adopted(tmp_path: Path) -> None:
    (tmp_path / "notes.py").write_text("# the user's, not committed\n")
    ledger = MemoryLedger()
    replies: Replies = {
        ("architect", None, 1): plan_reply(node_spec("n1", ["calc.py"])),
        ("actuator", "n1", 1): bundle_reply({"calc.py": GOOD, "notes.py": "x = 1\n"}),
        ("actuator", "n1", 2): bundle_reply({"calc.py": GOOD}),
    }
    engine, _, sink = make_engine(tmp_path, replies, adopt_new_files=True, ledger=ledger)
    assert (await run(engine)).outcome == "success"
    assert sink.of(ev.FileAdopted) == [] and "notes.py" not in ledger.files
    assert (tmp_path / "notes.py").read_text() == "# the user's, not committed\n"


async def test_two_nodes_writing_one_new_file_one_adopts_it_the_other_is_refused(
    tmp_path: Path,
) -> None:
    replies: Replies = {
        ("architect", None, 1): plan_reply(node_spec("n1", ["a.py"]), node_spec("n2", ["b.py"])),
        ("actuator", "n1", 1): bundle_reply({"a.py": "A = 1\n", "shared.py": "S = 1\n"}),
        ("actuator", "n2", 1): bundle_reply({"b.py": "B = 1\n", "shared.py": "S = 2\n"}),
        ("actuator", "n1", 2): bundle_reply({"a.py": "A = 1\n"}),
        ("actuator", "n2", 2): bundle_reply({"b.py": "B = 1\n"}),
    }
    ledger = MemoryLedger()
    engine, _, sink = make_engine(tmp_path, replies, adopt_new_files=True, ledger=ledger)
    result = await run(engine)
    assert result.nodes == {"n1": NodeState.COMMITTED, "n2": NodeState.COMMITTED}
    [adopted] = sink.of(ev.FileAdopted)
    loser = "n2" if adopted.node == "n1" else "n1"
    refused = [g for g in sink.of(ev.BundleGenerated) if g.node == loser and g.problems]
    assert refused and "shared.py is not owned" in refused[0].problems[0]
    assert ledger.files["shared.py"] == (b"S = 1\n" if adopted.node == "n1" else b"S = 2\n")


async def test_a_command_running_a_test_nobody_wrote_is_not_run_and_says_what_to_do(
    tmp_path: Path,
) -> None:
    replies: Replies = {
        ("architect", None, 1): plan_reply(node_spec("n1", ["calc.py"])),
        ("actuator", "n1", 1): bundle_reply({"calc.py": GOOD}, ["pytest -q test_calc.py"]),
        ("actuator", "n1", 2): bundle_reply(
            {"calc.py": GOOD, "test_calc.py": TEST}, ["pytest -q test_calc.py"]
        ),
    }
    engine, client, sink = make_engine(tmp_path, replies, adopt_new_files=True)
    result = await run(engine)
    assert result.outcome == "success"
    first = sink.of(ev.Verification)[0]
    assert not first.stable
    messages = [str(item["message"]) for item in first.evidence]
    assert any(
        "it runs test_calc.py, which does not exist: put test_calc.py in this bundle's writes" in m
        and "or drop the command" in m
        for m in messages
    )
    second = [r for r in client.requests if r.tier.value == "actuator"][1]
    assert "put test_calc.py in this bundle's writes" in second.prompt
    assert [a.path for a in sink.of(ev.FileAdopted)] == ["test_calc.py"]


async def test_a_command_running_a_test_another_node_writes_says_to_drop_it(
    tmp_path: Path,
) -> None:
    replies: Replies = {
        ("architect", None, 1): plan_reply(
            node_spec("n1", ["calc.py"]),
            node_spec("t", ["test_calc.py"], kind="unit_test", depends_on=["n1"]),
        ),
        ("actuator", "n1", 1): bundle_reply({"calc.py": GOOD}, ["pytest test_calc.py"]),
        ("actuator", "n1", 2): bundle_reply({"calc.py": GOOD}),
        ("actuator", "t", 1): bundle_reply({"test_calc.py": TEST}, ["pytest test_calc.py"]),
    }
    engine, _, sink = make_engine(tmp_path, replies, adopt_new_files=True)
    assert (await run(engine)).outcome == "success"
    messages = [str(item["message"]) for item in sink.of(ev.Verification)[0].evidence]
    assert any("which t writes: drop the command (t runs it)" in m for m in messages)


async def test_the_actuator_hears_which_owned_files_it_must_create(tmp_path: Path) -> None:
    ledger = MemoryLedger({"calc.py": GOOD.encode()})
    replies: Replies = {
        ("architect", None, 1): plan_reply(node_spec("n1", ["calc.py", "test_calc.py"])),
        ("actuator", "n1", 1): bundle_reply({"test_calc.py": TEST}),
    }
    engine, client, _ = make_engine(tmp_path, replies, adopt_new_files=True, ledger=ledger)
    assert (await run(engine)).outcome == "success"
    prompt = next(r for r in client.requests if r.tier.value == "actuator").prompt
    assert "yours to create in this bundle with a full write: test_calc.py." in prompt


async def test_a_bundle_repeating_the_plan_s_command_runs_it_once(tmp_path: Path) -> None:
    runner = FakeRunner()
    replies: Replies = {
        ("architect", None, 1): plan_reply(
            node_spec("n1", ["calc.py"], commands=["python -c 'import calc'"])
        ),
        ("actuator", "n1", 1): bundle_reply({"calc.py": GOOD}, ["python -c 'import calc'"]),
    }
    engine, _, _ = make_engine(tmp_path, replies, adopt_new_files=True, runner=runner)
    assert (await run(engine)).outcome == "success"
    assert runner.ran.count("python -c 'import calc'") == 1


async def test_a_command_running_an_owned_test_not_yet_written_says_to_write_it(
    tmp_path: Path,
) -> None:
    replies: Replies = {
        ("architect", None, 1): plan_reply(
            node_spec("n1", ["calc.py", "test_calc.py"], commands=["pytest test_calc.py"])
        ),
        ("actuator", "n1", 1): bundle_reply({"calc.py": GOOD}),
        ("actuator", "n1", 2): bundle_reply({"calc.py": GOOD, "test_calc.py": TEST}),
    }
    runner = FakeRunner()
    engine, _, sink = make_engine(tmp_path, replies, adopt_new_files=True, runner=runner)
    assert (await run(engine)).outcome == "success"
    messages = [str(item["message"]) for item in sink.of(ev.Verification)[0].evidence]
    told = [m for m in messages if "it runs test_calc.py" in m]
    assert told == [
        "not run: it runs test_calc.py, which does not exist: put test_calc.py in this "
        "bundle's writes with its full content (this node owns it)"
    ]
    assert runner.ran == ["pytest test_calc.py"]  # run only once the file was there


@pytest.mark.parametrize("path", [".env", ".git/hooks/post-commit", ".keel/x.py", "../out.py"])
async def test_secrets_and_keel_s_own_places_are_never_adopted(tmp_path: Path, path: str) -> None:
    (tmp_path / ".git").mkdir()
    replies: Replies = {
        ("architect", None, 1): plan_reply(node_spec("n1", ["calc.py"])),
        ("actuator", "n1", 1): bundle_reply({"calc.py": GOOD, path: "x = 1\n"}),
        ("actuator", "n1", 2): bundle_reply({"calc.py": GOOD}),
    }
    ledger = MemoryLedger()
    engine, _, sink = make_engine(tmp_path, replies, adopt_new_files=True, ledger=ledger)
    assert (await run(engine)).outcome == "success"
    assert sink.of(ev.FileAdopted) == []
    assert sink.of(ev.BundleGenerated)[0].problems  # refused as before
    assert set(ledger.files) == {"calc.py"}
