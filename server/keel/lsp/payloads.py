"""Every payload of Keel's own LSP messages, defined once.

The ``keel.server.*`` commands (their one JSON argument and their result) and the ``keel/*``
notifications in both directions are pydantic models here. The server builds its results
and notifications from them (``wire()`` gives the JSON), ``keel.lsp.args`` validates what
the editor sends with them, and ``scripts/protocol-schema`` publishes them as JSON Schema
(``docs/reference/lsp.schema.json``), from which the VS Code types and the Neovim LuaCATS
classes are generated; a test fails when any of these drift. Keys are camelCase on the
wire, except the energy components (``v_syn``, ...), which keep the names of the headless
events. The messages are described in ``docs/reference/lsp.md``.

Clients read exactly these keys. A payload may gain optional keys later, so a client
ignores keys it does not know; it never looks for another spelling of one it does.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import WithJsonSchema

from keel.engine.models import SHOWN_NODE_STATES
from keel.engine.replies import TaskPlan

MAX_TASK_CHARS = 20_000
MAX_TEXT_CHARS = 20_000
MAX_DIAGNOSTICS = 1_000
MAX_MESSAGE_CHARS = 2_000

#: The lifecycle states a node of the summary may be in.
NODE_STATES = SHOWN_NODE_STATES


class Payload(BaseModel):
    """What the server sends: camelCase keys, every key always present (``null`` if none)."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )

    def wire(self) -> Any:
        """The JSON value sent to the editor."""
        return self.model_dump(mode="json", by_alias=True)


# -- results and notifications (server to client) -------------------------------------------


class Energy(Payload):
    """An energy measurement as the editor sees it: V(x), its components, epsilon, stable."""

    model_config = ConfigDict(alias_generator=None)

    v: float = Field(description="V(x), the weighted sum of the components")
    v_syn: float
    v_str: float
    v_log: float
    v_boot: float
    v_sheaf: float
    epsilon: float = Field(description="the stability threshold")
    stable: bool = Field(description="V(x) < epsilon and no sensor degraded")


class BundleProposed(Payload):
    """A bundle waiting for the user's decision (``keel/bundleProposed``, ``pendingBundles``)."""

    bundle_id: str
    node_id: str
    title: str
    files: list[str] = Field(description="file URIs the bundle touches")
    energy: Energy
    session_id: str


class SummaryNode(Payload):
    """One node of the session summary."""

    id: str
    title: str
    kind: str = Field(description="code, unit_test or command ('' before the plan says)")
    state: str = Field(description="one of: " + ", ".join(NODE_STATES))
    owns: list[str] = Field(description="workspace-relative paths the node owns")
    depends_on: list[str] = Field(description="ids of the nodes it runs after")
    attempts: int
    energy: Energy | None = Field(description="the latest measurement, null before one")
    ledger_entry: str | None = Field(description="the commit of a committed node")


class SessionRef(Payload):
    """A session the server knows (to resume it)."""

    session_id: str
    task: str
    running: bool
    outcome: str | None


class SessionSummary(Payload):
    """``keel.server.status`` and ``keel/sessionChanged``: the current session, its nodes,
    every pending bundle and the sessions this server knows. No session: ``sessionId`` null."""

    session_id: str | None
    task: str | None
    running: bool
    outcome: str | None = Field(description="null while running or before any session")
    reason: str
    mode: str | None
    epsilon: float | None
    nodes: list[SummaryNode]
    pending_bundles: list[BundleProposed]
    sessions: list[SessionRef]


class SessionIdResult(Payload):
    """``keel.server.startSession`` and ``keel.server.resume``."""

    session_id: str


class LedgerEntryResult(Payload):
    """``keel.server.approve`` (the approval commit) and ``keel.server.rollback`` (the revert)."""

    ledger_entry: str


class DecisionResult(Payload):
    """``keel.server.reject`` and ``keel.server.correct``."""

    bundle_id: str
    decision: Literal["rejected", "correcting"]


class AbortResult(Payload):
    """``keel.server.abort``: the sessions it cancelled."""

    aborted: list[str]


class DiffHunk(Payload):
    """One changed region of a file (zero lines of context), decided on its own with
    ``hunks`` on approve and reject. Starts are 1-based; with a count of 0 the start is the
    line after which the change sits (0: before the first line)."""

    id: str = Field(description="stable: kept when other hunks are committed or dropped")
    old_start: int
    old_lines: int
    new_start: int
    new_lines: int
    header: str = Field(description="'@@ -oldStart,oldLines +newStart,newLines @@'")
    removed: list[str] = Field(description="the base's lines, without line endings")
    added: list[str] = Field(description="the proposal's lines, without line endings")


class DiffFile(Payload):
    """One file of ``keel.server.diff``."""

    uri: str
    path: str = Field(description="workspace-relative")
    change: Literal["create", "modify", "delete"]
    before: str = Field(description="'' for a created file")
    after: str = Field(description="'' for a deleted file")
    unified_diff: str = Field(description="a git-style patch")
    hunks: list[DiffHunk] = Field(
        description="the changed regions; a created, deleted or binary file is one hunk"
    )


class DiffResult(Payload):
    """``keel.server.diff``."""

    bundle_id: str
    files: list[DiffFile]


class LedgerEntry(Payload):
    """One approval commit of ``keel.server.ledger``, newest first."""

    sha: str
    title: str
    session_id: str
    node_id: str
    bundle: str
    energy: str = Field(description="the Keel-Energy trailer, e.g. 'V=0.000'")
    approved_by: str
    timestamp: str
    files: list[str] = Field(description="workspace-relative paths")
    reverts: str | None = Field(description="the entry a rollback commit reverts")


class LedgerResult(RootModel[list[LedgerEntry]]):
    """``keel.server.ledger``: a JSON array of entries."""

    def wire(self) -> Any:
        return self.model_dump(mode="json", by_alias=True)


class ExploreCall(Payload):
    """One read-only tool call of the architect (``keel.server.plan``/``explain``)."""

    tool: str
    arguments: dict[str, Any]
    chars: int
    refused: bool
    reason: str


class InvalidAttempt(Payload):
    attempt: int
    errors: list[str]


class PlanResult(Payload):
    """``keel.server.plan``: the plan (as ``keel plan --json``) and its Markdown."""

    task: str
    plan: TaskPlan
    invalid_attempts: list[InvalidAttempt]
    explore: list[ExploreCall]
    markdown: str


class Citation(Payload):
    path: str
    line: int
    uri: str


class DroppedCitation(Payload):
    path: str
    line: int
    reason: str


class ExplainResult(Payload):
    """``keel.server.explain``: the answer, its checked citations and its Markdown."""

    question: str
    answer: str
    citations: list[Citation]
    dropped: list[DroppedCitation]
    explore: list[ExploreCall]
    markdown: str


# -- command arguments (client to server) ----------------------------------------------------


class Args(BaseModel):
    """A command's one JSON object: camelCase keys, nothing else allowed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, alias_generator=to_camel)


class NoArgs(Args):
    pass


class ScopeArgs(Args):
    """Limits on the plan: at most ``maxNodes`` nodes, and ``files`` (URIs) owned by one."""

    files: list[str] = Field(default_factory=list, max_length=100)
    max_nodes: int | None = Field(default=None, ge=1, le=1_000)


class StartSessionArgs(Args):
    task: str = Field(min_length=1, max_length=MAX_TASK_CHARS)
    mode: Literal["cautious", "balanced", "yolo"] | None = None
    scope: ScopeArgs | None = None


class BundleArgs(Args):
    bundle_id: str = Field(min_length=1, max_length=200)


MAX_HUNKS = 10_000

HunkIds = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=64)]],
    Field(min_length=1, max_length=MAX_HUNKS),
]


class _Choice(BundleArgs):
    """``files`` (URIs) or ``hunks`` (ids from ``keel.server.diff``), never both; neither
    decides the whole bundle."""

    files: list[str] | None = Field(default=None, min_length=1, max_length=10_000)
    hunks: HunkIds | None = Field(default=None, description="hunk ids of keel.server.diff")

    @model_validator(mode="after")
    def _one_choice(self) -> _Choice:
        if self.files is not None and self.hunks is not None:
            raise ValueError("give files or hunks, not both")
        twice = sorted(h for h, n in Counter(self.hunks or ()).items() if n > 1)
        if twice:
            raise ValueError(f"hunk ids given twice: {', '.join(twice)}")
        return self


class ApproveArgs(_Choice):
    pass


class RejectArgs(_Choice):
    reason: str = Field(default="", max_length=MAX_TEXT_CHARS)


class CorrectArgs(BundleArgs):
    feedback: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)


class SessionArgs(Args):
    session_id: str | None = Field(default=None, min_length=1, max_length=200)


class LedgerArgs(Args):
    limit: int | None = Field(default=None, ge=1, le=1_000)


class RollbackArgs(Args):
    entry: str = Field(min_length=4, max_length=100, pattern="^[0-9a-fA-F]+$")


class PlanArgs(Args):
    """``keel.server.plan``: the task, and optionally the editor's file (a URI), shown first."""

    task: str = Field(min_length=1, max_length=MAX_TASK_CHARS)
    file: str | None = Field(default=None, min_length=1, max_length=10_000)


class ExplainArgs(Args):
    """``keel.server.explain``: a question or a symbol, and optionally the editor's file."""

    question: str = Field(min_length=1, max_length=MAX_TASK_CHARS)
    file: str | None = Field(default=None, min_length=1, max_length=10_000)


# -- keel/editorDiagnostics (client to server) -----------------------------------------------


@dataclass(frozen=True)
class EditorDiagnostic:
    """The part of a forwarded LSP diagnostic that V_syn needs."""

    line: int
    message: str
    severity: int | None = None
    source: str | None = None
    code: str | None = None


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Position(_Loose):
    line: int = Field(ge=0)
    character: int = Field(default=0, ge=0)


class Range(_Loose):
    start: Position
    end: Position | None = None


class Diagnostic(_Loose):
    """The keys of an LSP ``Diagnostic`` that Keel reads (others are ignored)."""

    range: Range
    message: str
    severity: int | None = Field(default=None, ge=1, le=4)
    source: str | None = None
    code: str | int | None = None


class EditorDiagnosticsParams(_Loose):
    """``keel/editorDiagnostics``: a file's diagnostics from the editor's other sources
    (extra keys are ignored; a malformed diagnostic is skipped, not the report)."""

    uri: str = Field(min_length=1, max_length=4_096)
    version: int | None = None
    #: Each item is read on its own in ``parsed()``; the schema says what a client sends.
    diagnostics: Annotated[
        list[Any],
        WithJsonSchema(
            {"type": "array", "items": {"$ref": "#/$defs/Diagnostic"}, "maxItems": 100_000}
        ),
    ] = Field(max_length=100_000)

    @field_validator("uri")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\0" in value:
            raise ValueError("NUL in uri")
        return value

    def parsed(self) -> tuple[list[EditorDiagnostic], int]:
        """The usable diagnostics (at most ``MAX_DIAGNOSTICS``) and how many were skipped."""
        out: list[EditorDiagnostic] = []
        skipped = 0
        for raw in self.diagnostics:
            if len(out) >= MAX_DIAGNOSTICS:
                skipped += 1
                continue
            try:
                item = Diagnostic.model_validate(raw)
            except ValidationError:
                skipped += 1
                continue
            out.append(
                EditorDiagnostic(
                    line=item.range.start.line,
                    message=item.message[:MAX_MESSAGE_CHARS],
                    severity=item.severity,
                    source=item.source,
                    code=None if item.code is None else str(item.code),
                )
            )
        return out, skipped


# -- the messages ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A ``keel.server.*`` command: its argument and its result."""

    name: str
    args: type[BaseModel]
    result: type[BaseModel]
    summary: str


@dataclass(frozen=True)
class Notification:
    """A ``keel/*`` notification and the direction it travels."""

    method: str
    params: type[BaseModel]
    direction: Literal["serverToClient", "clientToServer"]
    summary: str


COMMANDS = (
    Command("keel.server.startSession", StartSessionArgs, SessionIdResult, "start a session"),
    Command("keel.server.status", NoArgs, SessionSummary, "the session summary"),
    Command(
        "keel.server.approve", ApproveArgs, LedgerEntryResult, "approve (some files of) a bundle"
    ),
    Command("keel.server.reject", RejectArgs, DecisionResult, "reject (some files of) a bundle"),
    Command("keel.server.correct", CorrectArgs, DecisionResult, "regenerate with feedback"),
    Command("keel.server.diff", BundleArgs, DiffResult, "a pending bundle's files"),
    Command("keel.server.abort", SessionArgs, AbortResult, "abort running sessions"),
    Command("keel.server.resume", SessionArgs, SessionIdResult, "resume a stored session"),
    Command("keel.server.ledger", LedgerArgs, LedgerResult, "recent ledger entries"),
    Command("keel.server.rollback", RollbackArgs, LedgerEntryResult, "revert a ledger entry"),
    Command("keel.server.plan", PlanArgs, PlanResult, "plan a task without running it"),
    Command("keel.server.explain", ExplainArgs, ExplainResult, "answer a question"),
)

NOTIFICATIONS = (
    Notification("keel/sessionChanged", SessionSummary, "serverToClient", "the summary changed"),
    Notification("keel/bundleProposed", BundleProposed, "serverToClient", "a bundle waits"),
    Notification(
        "keel/editorDiagnostics",
        EditorDiagnosticsParams,
        "clientToServer",
        "the editor's diagnostics of a file",
    ),
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/$defs/{model.__name__}"}


def schema() -> dict[str, Any]:
    """The JSON Schema of every message: ``$defs`` and, per message, refs into them.

    Arguments are described as the server validates them, results and notifications as it
    sends them (every key present).
    """
    from pydantic.json_schema import models_json_schema

    inputs = (
        {c.args for c in COMMANDS}
        | {Diagnostic}
        | {n.params for n in NOTIFICATIONS if n.direction == "clientToServer"}
    )
    outputs = {c.result for c in COMMANDS} | {
        n.params for n in NOTIFICATIONS if n.direction == "serverToClient"
    }
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (m, "validation") for m in sorted(inputs, key=lambda m: m.__name__)
    ] + [(m, "serialization") for m in sorted(outputs, key=lambda m: m.__name__)]
    _, top = models_json_schema(models, ref_template="#/$defs/{model}", by_alias=True)
    defs = top["$defs"]
    for model, mode in models:  # serialized payloads always carry every key
        if mode == "serialization":
            _require_all(defs, model.__name__)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Keel language server protocol",
        "description": (
            "The payloads of Keel's own LSP messages (docs/reference/lsp.md). Generated from "
            "server/keel/lsp/payloads.py by scripts/protocol-schema; do not edit."
        ),
        "commands": {
            c.name: {"summary": c.summary, "argument": _ref(c.args), "result": _ref(c.result)}
            for c in COMMANDS
        },
        "notifications": {
            n.method: {"summary": n.summary, "direction": n.direction, "params": _ref(n.params)}
            for n in NOTIFICATIONS
        },
        "$defs": dict(sorted(defs.items())),
    }


def _require_all(defs: dict[str, Any], name: str) -> None:
    """Mark every property of an output model required, and do the same for the models it
    refers to (pydantic leaves keys with defaults optional, but ``wire()`` always sends them)."""
    definition = defs[name]
    if "properties" in definition:
        definition["required"] = list(definition["properties"])
    for ref in _refs({k: v for k, v in definition.items() if k != "$ref"}):
        if ref != name:
            _require_all(defs, ref)


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["$ref"].rsplit("/", 1)[-1]] if "$ref" in value else []
        for inner in value.values():
            found += _refs(inner)
        return found
    if isinstance(value, list):
        return [r for item in value for r in _refs(item)]
    return []
