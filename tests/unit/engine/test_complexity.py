"""Balanced mode's complexity: files the bundle changes plus every command the attempt runs
(the plan node's own and the bundle's), against the K threshold."""

from __future__ import annotations

import pytest

from keel.bundles.apply import ChangeSet
from keel.engine.models import Energy, NodeKind
from keel.engine.node import Attempt, complexity
from keel.engine.replies import ArtifactBundle, PlanNode
from keel.engine.settings import EngineSettings


def _attempt(files: int, bundle_commands: int) -> Attempt:
    paths = [f"f{i}.py" for i in range(files)]
    bundle = ArtifactBundle(commands=[f"echo {i}" for i in range(bundle_commands)])
    changes = ChangeSet(changes=dict.fromkeys(paths, b"x"), base=dict.fromkeys(paths))
    return Attempt(1, bundle, changes, Energy(components={}))


def _node(commands: int) -> PlanNode:
    planned = [f"make step{i}" for i in range(commands)]
    return PlanNode(id="n", title="t", kind=NodeKind.CODE, commands=planned)


@pytest.mark.parametrize(
    ("files", "node_commands", "bundle_commands", "expected"),
    [
        (1, 0, 0, 1),
        (1, 2, 0, 3),  # the plan node's commands count too
        (2, 1, 1, 4),
        (0, 3, 1, 4),
    ],
)
def test_complexity_counts_files_and_both_kinds_of_command(
    files: int, node_commands: int, bundle_commands: int, expected: int
) -> None:
    assert complexity(_node(node_commands), _attempt(files, bundle_commands)) == expected


def test_balanced_mode_asks_only_above_k() -> None:
    balanced = EngineSettings(mode="balanced", complexity_k=3)
    at_k = complexity(_node(2), _attempt(1, 0))
    above_k = complexity(_node(2), _attempt(1, 1))
    assert (at_k, above_k) == (3, 4)
    assert not balanced.needs_approval(at_k)
    assert balanced.needs_approval(above_k)


def test_an_attempt_without_a_valid_bundle_counts_only_the_nodes_commands() -> None:
    assert complexity(_node(2), Attempt(1, None, None, Energy(components={}))) == 2
