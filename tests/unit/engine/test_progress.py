"""A correction builds on the attempt before it (``NodeRunner._progress``).

The node owns ``calc.py`` and ``test_calc.py``. With the toy plugin, ``SYNTAX`` in a file is a
checker error and ``FAIL`` in a test file a failing test, so each attempt's verdict is plain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from keel.engine.models import Component, NodeState, Residual, SensorReport, Tier
from keel.engine.node import NodeRunner
from keel.engine.ports import Decision
from keel.engine.verifier import Verifier, within
from tests.unit.engine.doubles import (
    KeyedClient,
    MemoryLedger,
    ScriptedApprover,
    ToyPlugin,
    bundle_reply,
)
from tests.unit.engine.test_engine_in_memory import Replies, node_context, plan_node

OWNS = ("calc.py", "test_calc.py")
TEST = "from calc import add\n\ndef test_add():\n    assert add(1, 2) == 3\n"
BROKEN = "def add(a, b):\n    return SYNTAX\n"
FIXED = "def add(a, b):\n    return a + b\n"
SWAPPED = "def add(a, b):\n    return b + a\n"


def actuator_prompts(client: KeyedClient) -> list[str]:
    return [r.prompt for r in client.requests if r.tier is Tier.ACTUATOR]


async def test_a_file_the_correction_leaves_out_keeps_the_last_attempts_content(
    tmp_path: Path,
) -> None:
    replies: Replies = {
        ("actuator", "n1", 1): bundle_reply({"calc.py": BROKEN, "test_calc.py": TEST}),
        ("actuator", "n1", 2): bundle_reply({"calc.py": FIXED}),  # the test is not repeated
    }
    ledger = MemoryLedger()
    ctx, _, client = node_context(tmp_path, replies, ledger=ledger)
    assert await NodeRunner(ctx, plan_node(owns=OWNS)).run() is NodeState.COMMITTED
    assert ledger.files == {"calc.py": FIXED.encode(), "test_calc.py": TEST.encode()}
    (commit,) = ledger.log
    assert sorted(commit.files) == ["calc.py", "test_calc.py"]
    first, second = actuator_prompts(client)
    assert "assert add(1, 2) == 3" not in first
    assert "assert add(1, 2) == 3" in second  # shown as attempt 1 left it
    assert "shown as attempt 1 left them (not committed): calc.py, test_calc.py" in second
    assert "Produce a complete new bundle" not in second


async def test_a_bundle_that_cannot_be_applied_leaves_the_progress_as_it_was(
    tmp_path: Path,
) -> None:
    replies: Replies = {
        ("actuator", "n1", 1): bundle_reply({"calc.py": BROKEN, "test_calc.py": TEST}),
        ("actuator", "n1", 2): bundle_reply({"calc.py": FIXED, "elsewhere.py": "x = 1\n"}),
        ("actuator", "n1", 3): bundle_reply({"calc.py": FIXED}),
    }
    ledger = MemoryLedger()
    ctx, _, client = node_context(tmp_path, replies, ledger=ledger)
    assert await NodeRunner(ctx, plan_node(owns=OWNS)).run() is NodeState.COMMITTED
    assert ledger.files == {"calc.py": FIXED.encode(), "test_calc.py": TEST.encode()}
    third = actuator_prompts(client)[2]
    assert "elsewhere.py is not owned by this node" in third
    assert "shown as attempt 2 left them (not committed): calc.py, test_calc.py" in third
    assert "return SYNTAX" in third  # attempt 2 changed nothing: attempt 1's files stand


async def test_a_rejected_bundle_is_not_built_on(tmp_path: Path) -> None:
    replies: Replies = {
        ("actuator", "n1", 1): bundle_reply({"calc.py": SWAPPED, "test_calc.py": TEST}),
        ("actuator", "n1", 2): bundle_reply({"calc.py": FIXED, "test_calc.py": TEST}),
    }
    ledger = MemoryLedger()
    approver = ScriptedApprover([Decision(False, "user", feedback="a + b, please"), Decision(True)])
    ctx, _, client = node_context(
        tmp_path, replies, approver=approver, ledger=ledger, mode="cautious"
    )
    assert await NodeRunner(ctx, plan_node(owns=OWNS)).run() is NodeState.COMMITTED
    assert ledger.files == {"calc.py": FIXED.encode(), "test_calc.py": TEST.encode()}
    second = actuator_prompts(client)[1]
    assert "a + b, please" in second
    assert "return b + a" not in second  # the rejected content is not shown as the files'
    assert "--- test_calc.py ---\n(does not exist yet)" in second
    assert "left them (not committed)" not in second


async def test_a_corrected_bundle_is_built_on(tmp_path: Path) -> None:
    """A correction (``c`` in the terminal, ``keel.server.correct``, the API's ``correct``)
    asks for a change to the proposal: the next attempt sees the proposed files and changes
    only what it must (here calc.py; the test it leaves out stays as proposed)."""
    replies: Replies = {
        ("actuator", "n1", 1): bundle_reply({"calc.py": SWAPPED, "test_calc.py": TEST}),
        ("actuator", "n1", 2): bundle_reply({"calc.py": FIXED}),
    }
    ledger = MemoryLedger()
    correct = Decision(False, "user", feedback="a + b, please", correction=True)
    approver = ScriptedApprover([correct, Decision(True)])
    ctx, _, client = node_context(
        tmp_path, replies, approver=approver, ledger=ledger, mode="cautious"
    )
    assert await NodeRunner(ctx, plan_node(owns=OWNS)).run() is NodeState.COMMITTED
    assert ledger.files == {"calc.py": FIXED.encode(), "test_calc.py": TEST.encode()}
    second = actuator_prompts(client)[1]
    assert "The reviewer asks for changes to the bundle" in second and "a + b, please" in second
    assert "return b + a" in second and "assert add(1, 2) == 3" in second  # as proposed
    assert "shown as attempt 1 left them (not committed): calc.py, test_calc.py" in second
    _, again = approver.reviewed
    assert sorted(again.changes) == ["calc.py", "test_calc.py"]  # the test, as proposed


async def test_a_file_written_back_to_its_committed_content_leaves_the_bundle(
    tmp_path: Path,
) -> None:
    replies: Replies = {
        ("actuator", "n1", 1): bundle_reply({"calc.py": BROKEN, "test_calc.py": "FAIL\n"}),
        ("actuator", "n1", 2): bundle_reply({"calc.py": "old = 1\n", "test_calc.py": TEST}),
    }
    ledger = MemoryLedger({"calc.py": b"old = 1\n"})
    ctx, _, _ = node_context(tmp_path, replies, ledger=ledger)
    assert await NodeRunner(ctx, plan_node(owns=OWNS)).run() is NodeState.COMMITTED
    (commit,) = ledger.log
    assert list(commit.files) == ["test_calc.py"]  # calc.py ends as it began: no change


async def test_a_diff_applies_to_the_last_attempts_content(tmp_path: Path) -> None:
    patch = (
        "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n"
        " def add(a, b):\n-    return SYNTAX\n+    return a + b\n"
    )
    replies: Replies = {
        ("actuator", "n1", 1): bundle_reply({"calc.py": BROKEN, "test_calc.py": TEST}),
        ("actuator", "n1", 2): {**bundle_reply({}), "diffs": [{"path": "calc.py", "patch": patch}]},
    }
    ledger = MemoryLedger()
    ctx, _, _ = node_context(tmp_path, replies, ledger=ledger)
    assert await NodeRunner(ctx, plan_node(owns=OWNS)).run() is NodeState.COMMITTED
    assert ledger.files == {"calc.py": FIXED.encode(), "test_calc.py": TEST.encode()}


def with_deletes(reply: dict[str, object], *paths: str) -> dict[str, object]:
    return {**reply, "deletes": list(paths)}


async def test_deleting_a_file_only_the_last_attempt_created_is_dropped(tmp_path: Path) -> None:
    """Calculator, run 9: attempt 3 deleted the test attempt 2 wrote, "to start over". The
    deletion is dropped; the rest of the bundle (here the fix) stands."""
    replies: Replies = {
        ("actuator", "n1", 1): bundle_reply({"calc.py": BROKEN, "test_calc.py": TEST}),
        ("actuator", "n1", 2): with_deletes(bundle_reply({"calc.py": FIXED}), "./test_calc.py"),
    }
    ledger = MemoryLedger()
    ctx, records, client = node_context(tmp_path, replies, ledger=ledger)
    assert await NodeRunner(ctx, plan_node(owns=OWNS)).run() is NodeState.COMMITTED
    assert ledger.files == {"calc.py": FIXED.encode(), "test_calc.py": TEST.encode()}
    assert len(actuator_prompts(client)) == 2  # attempt 2 was stable: no third
    (warning,) = [e for e in records.events if e["type"] == "warning"]
    assert warning["message"] == (
        "n1 attempt 2: the deletion of test_calc.py was dropped: the last attempt created it "
        "and this node owns it"
    )


async def test_deleting_a_file_the_nodes_command_runs_is_dropped(tmp_path: Path) -> None:
    """Fix, run 6, and greet, run 17: a correct fix that also deleted the test file its
    command runs."""
    command = "python -m pytest -q test_calc.py"
    replies: Replies = {
        ("actuator", "n1", 1): with_deletes(
            bundle_reply({"calc.py": FIXED}, [command]), "test_calc.py"
        ),
    }
    ledger = MemoryLedger({"calc.py": BROKEN.encode(), "test_calc.py": TEST.encode()})
    ctx, _, client = node_context(tmp_path, replies, ledger=ledger)
    assert await NodeRunner(ctx, plan_node(owns=OWNS)).run() is NodeState.COMMITTED
    assert ledger.files == {"calc.py": FIXED.encode(), "test_calc.py": TEST.encode()}
    assert len(actuator_prompts(client)) == 1
    (commit,) = ledger.log
    assert sorted(commit.files) == ["calc.py"]


async def test_deleting_a_committed_file_no_command_runs_is_still_allowed(tmp_path: Path) -> None:
    replies: Replies = {
        ("actuator", "n1", 1): with_deletes(bundle_reply({"calc.py": FIXED}), "old_calc.py"),
    }
    ledger = MemoryLedger({"calc.py": BROKEN.encode(), "old_calc.py": b"x = 1\n"})
    ctx, _, _ = node_context(tmp_path, replies, ledger=ledger)
    node = plan_node(owns=("calc.py", "old_calc.py"))
    assert await NodeRunner(ctx, node).run() is NodeState.COMMITTED
    assert ledger.files == {"calc.py": FIXED.encode()}


async def test_a_bundle_that_changes_nothing_is_evidence_not_a_loop(tmp_path: Path) -> None:
    """An empty reply on a node whose checks pass: it is never stable (an approval would
    commit nothing, and the node would ask again forever); the model hears why, and the node
    escalates when its attempts are spent."""
    replies: Replies = {("actuator", "n1", n): bundle_reply({}) for n in (1, 2, 3)}
    ledger = MemoryLedger({"calc.py": FIXED.encode(), "test_calc.py": TEST.encode()})
    ctx, records, client = node_context(tmp_path, replies, ledger=ledger)
    assert await NodeRunner(ctx, plan_node(owns=OWNS)).run() is NodeState.ESCALATED
    assert ledger.log == []
    assert "the bundle changes no file" in actuator_prompts(client)[1]
    assert [a.stable for a in records.attempts.values()] == [False, False, False]


class TracebackPlugin(ToyPlugin):
    """Reports ``SYNTAX`` the way pytest does: with the absolute path of the tree it ran in."""

    async def check(self, root: Path, files: Sequence[str]) -> SensorReport:
        found = [
            Residual(
                Component.SYN, f'File "{root / path}", line 2: invalid syntax', "toy", path=path
            )
            for path in files
            if "SYNTAX" in (root / path).read_text()
        ]
        return SensorReport("toy", tuple(found))


async def test_evidence_names_files_relative_to_the_workspace_not_the_sandbox(
    tmp_path: Path,
) -> None:
    """Run 18's word_count: shown a sandbox's absolute path in the evidence, the model wrote
    a patch for that path. Evidence is stored, shown and sent with workspace paths."""
    replies: Replies = {
        ("actuator", "n1", 1): bundle_reply({"calc.py": BROKEN}),
        ("actuator", "n1", 2): bundle_reply({"calc.py": FIXED}),
    }
    ctx, records, client = node_context(tmp_path, replies)
    plugin = TracebackPlugin()
    ctx = replace(ctx, verifier=Verifier([plugin], ctx.settings.weights, defer_tests=False))
    assert await NodeRunner(ctx, plan_node()).run() is NodeState.COMMITTED
    second = actuator_prompts(client)[1]
    assert 'File "calc.py", line 2: invalid syntax' in second
    assert str(ctx.sandbox_root) not in second
    (first, _) = records.attempts.values()
    assert first.evidence[0]["message"] == 'File "calc.py", line 2: invalid syntax'


def test_only_the_sandbox_itself_is_taken_out_of_messages(tmp_path: Path) -> None:
    sandbox = tmp_path / "n1" / "1"
    said = f"{sandbox}/calc.py:2: error; rootdir: {sandbox}; see {sandbox}0/x.py"
    report = SensorReport("toy", (Residual(Component.SYN, said, "toy"),))
    (out,) = within([report], sandbox)
    assert out.residuals[0].message == f"calc.py:2: error; rootdir: .; see {sandbox}0/x.py"
