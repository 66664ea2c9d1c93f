"""The model replies (docs/reference/protocol.md): pydantic models with ``extra="forbid"``,
so that a misspelt key ("write" for "writes") is a schema violation fed back to the model,
never silently dropped content.

They are apart from :mod:`keel.engine.models` (plain enums and dataclasses) so that the
commands that only read a session never import pydantic (tests/integration/
test_startup_imports.py pins it).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from keel.bundles.model import ArtifactBundle as ArtifactBundle
from keel.bundles.model import FileDiff as FileDiff
from keel.bundles.model import FileWrite as FileWrite
from keel.engine.models import NodeKind


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class NodeContract(_Reply):
    symbols: list[str] = Field(
        default_factory=list,
        description="the function, class or constant names the node's files must define "
        'at top level, e.g. ["circle_area"] for circle_area(radius); never a parameter '
        "such as radius, nor a local variable",
    )
    forbidden: list[str] = Field(
        default_factory=list,
        description='text that must not appear in the node\'s files (e.g. "TODO")',
    )


class PlanNode(_Reply):
    id: str = Field(min_length=1, description="a short unique name: letters, digits, - or _")
    title: str = Field(min_length=1, description="one line saying what the node does")
    kind: NodeKind = Field(
        description='"code" (writes source files), "unit_test" (writes test files) or '
        '"command" (project set-up checked by commands)'
    )
    owns: list[str] = Field(
        default_factory=list,
        description="the files this node creates or edits (workspace-relative, '/' "
        "separators); every code and unit_test node owns at least one file and no file has "
        "two owners",
    )
    context: list[str] = Field(
        default_factory=list,
        description="files the node reads but does not write (a test node lists the files "
        "it tests)",
    )
    depends_on: list[str] = Field(
        default_factory=list,
        description="ids of the nodes whose files this node needs; a unit_test node depends "
        "on the nodes it tests",
    )
    commands: list[str] = Field(
        default_factory=list,
        description='shell commands that check the node (e.g. "python -m pytest -q '
        "test_x.py\"); they must really run the node's tests",
    )
    contract: NodeContract = Field(
        default_factory=NodeContract,
        description="what the node's files must and must not contain",
    )


class TaskPlan(_Reply):
    nodes: list[PlanNode] = Field(
        min_length=1, description="the steps of the plan, at least one; keep it small"
    )


class VerifierReport(_Reply):
    verdict: Literal["stable", "unstable"] = Field(
        description='"unstable" when the evidence shows a problem (almost always), else "stable"'
    )
    analysis: str = Field(description="the root cause of the evidence, in a few sentences")
    fix_hints: list[str] = Field(
        default_factory=list, description="concrete changes that would fix it, one per item"
    )


class SpeculationHint(_Reply):
    node: str = Field(description="the id of the plan node the note is for")
    note: str = Field(description="an interface detail, pitfall or edge case to keep in mind")


class Speculation(_Reply):
    hints: list[SpeculationHint] = Field(
        default_factory=list, description="notes for the nodes likely to go wrong (may be empty)"
    )


class Citation(_Reply):
    """A place in the workspace an explanation rests on: ``path`` (workspace-relative) and
    ``line`` (1-based)."""

    path: str = Field(min_length=1, description="a workspace-relative path you were shown")
    line: int = Field(ge=1, description="a 1-based line number in that file")


class Explanation(_Reply):
    """``keel explain``'s reply: the answer (Markdown) and the places it cites."""

    answer: str = Field(min_length=1, description="the answer, in Markdown")
    citations: list[Citation] = Field(
        default_factory=list, description="the places the answer rests on"
    )


#: The structured-output name of each reply schema (docs/reference/protocol.md).
SCHEMA_NAMES: dict[type[BaseModel], str] = {
    TaskPlan: "task_plan",
    ArtifactBundle: "artifact_bundle",
    VerifierReport: "verifier_report",
    Speculation: "speculation",
    Explanation: "explanation",
}
