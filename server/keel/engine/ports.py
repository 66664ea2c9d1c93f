"""The contracts the adapters implement: the only way the engine reaches the outside world.

Providers, plugins, the ledger, the store and the command runner live outside ``engine`` and
never import each other; ``keel.app`` wires them together. Keeping these as
``typing.Protocol`` classes lets tests hand the engine small in-memory doubles below the level
they are about.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from keel.engine.models import (
    CommandResult,
    LedgerEntry,
    SensorReport,
    Tier,
    Usage,
)
from keel.engine.records import (
    ApprovalRecord,
    AttemptRecord,
    CallTotals,
    JsonObject,
    ModelCall,
)

if TYPE_CHECKING:
    from keel.engine.events import Event


class KeelError(Exception):
    """An error with a message meant for the user, one line, no traceback."""


class ConfigError(KeelError):
    """Bad usage or configuration (exit status 2)."""


class ProviderError(KeelError):
    """A model call failed. ``retryable`` says whether backing off and retrying may help.

    ``charged`` is what the failed call must still count for in the budget when the model
    answered but its reply cannot be believed (a usage that is negative, not an integer or
    absurd): a conservative estimate, so that a lying reply cannot defeat ``--max-cost``.
    """

    def __init__(
        self, message: str, *, retryable: bool = False, charged: Usage | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.charged = charged


class ConflictError(KeelError):
    """The user changed a file since the bundle was made; approval refuses."""

    def __init__(self, message: str, paths: Sequence[str]) -> None:
        super().__init__(message)
        self.paths = list(paths)


class LedgerRefused(KeelError):
    """The ledger will not commit now: git is mid-rebase, merge, cherry-pick, revert or bisect,
    ``HEAD`` is detached, a hook of the user's failed, signing failed, or the workspace is not
    as verified. ``output`` is the evidence (a hook's output). Nothing was written; the
    bundle stays pending and can be approved again once the cause is fixed."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


@dataclass(frozen=True)
class ToolSpec:
    """A read-only tool offered to a model: its name, what it does, its JSON Schema."""

    name: str
    description: str
    parameters: JsonObject


@dataclass(frozen=True)
class ToolCall:
    """One call a model made; ``id`` is the provider's, echoed back with the result."""

    id: str
    name: str
    arguments: JsonObject


@dataclass(frozen=True)
class ToolResult:
    """What a tool returned (bounded text); ``refused`` when the policy said no."""

    text: str
    refused: bool = False


@dataclass(frozen=True)
class ToolTurn:
    """One exploration turn of a conversation: the model's calls and each one's result."""

    calls: Sequence[ToolCall]
    results: Sequence[str]


class ExplorationTools(Protocol):
    """Read-only tools over the workspace (search, open, symbols, list), policy enforced.

    ``call`` never raises for bad input: a refusal, with its reason, is the result the
    model sees.
    """

    def specs(self) -> Sequence[ToolSpec]: ...

    async def call(self, name: str, arguments: JsonObject, limit: int) -> ToolResult: ...


@dataclass(frozen=True)
class ModelRequest:
    """One structured-output request (docs/reference/protocol.md).

    ``schema_name`` is the structured-output name (``task_plan``, ``artifact_bundle``,
    ``verifier_report``, ``speculation``) and ``schema`` its JSON Schema. The session, tier,
    node and attempt become the ``X-Keel-*`` headers and the replay lookup key.
    """

    tier: Tier
    schema_name: str
    schema: JsonObject
    system: str
    prompt: str
    session_id: str
    node_id: str | None
    attempt: int
    #: Read-only tools the model may call before it answers (exploration), and the turns
    #: so far: each the model's calls and their results. ``turn`` counts requests of one
    #: attempt from 1; ``must_answer`` withholds the tools (the budget is spent), and
    #: ``notice`` is said to the model after the last results.
    tools: Sequence[ToolSpec] = ()
    turns: Sequence[ToolTurn] = ()
    turn: int = 1
    must_answer: bool = False
    notice: str = ""
    #: The most tokens the reply may have (``[max_tokens]``, per tier); ``None``: the
    #: server's own limit. Sent on every request so that no reply can run away.
    max_tokens: int | None = None

    def headers(self) -> dict[str, str]:
        out = {
            "X-Keel-Session": self.session_id,
            "X-Keel-Tier": self.tier.value,
            "X-Keel-Attempt": str(self.attempt),
        }
        if self.node_id is not None:
            out["X-Keel-Node"] = self.node_id
        if self.turn > 1:
            out["X-Keel-Turn"] = str(self.turn)
        return out


@dataclass(frozen=True)
class ModelReply:
    """The raw text of a reply (validated by the engine, not the provider) and its cost."""

    text: str
    model: str
    usage: Usage
    latency_s: float
    #: The tools the model called instead of answering (``text`` is then empty).
    tool_calls: Sequence[ToolCall] = ()
    #: The reply stopped at ``max_tokens`` (its text is then likely cut mid-object).
    truncated: bool = False


class ModelClient(Protocol):
    """One configured model. Raises :class:`ProviderError` after its own retries."""

    @property
    def name(self) -> str: ...

    async def complete(self, request: ModelRequest) -> ModelReply: ...

    def estimate_cost(self, request: ModelRequest) -> float:
        """What ``request`` would likely cost in USD, before it is sent (0 when unpriced).

        The gateway checks ``--max-cost`` with it before a session's first call, when there
        is no call yet to go by.
        """
        ...


class CommandRunner(Protocol):
    """Runs a shell command in a directory with a timeout, an output cap and a scrubbed env."""

    async def run(self, command: str, cwd: Path, *, timeout_s: float) -> CommandResult: ...


class LanguagePlugin(Protocol):
    """A language's sensors: checker (V_syn), tests (V_log), build/init (V_boot), sheaf."""

    @property
    def name(self) -> str: ...

    def owns_file(self, path: str) -> bool: ...

    def is_test_file(self, path: str) -> bool: ...

    def command_allowed(self, command: str) -> bool:
        """True when ``-y`` may approve this model-proposed command (the allow-list)."""
        ...

    async def check(self, root: Path, files: Sequence[str]) -> SensorReport:
        """Diagnostics of ``files`` (relative paths) in the tree at ``root``."""
        ...

    async def run_tests(self, root: Path, files: Sequence[str] | None) -> SensorReport:
        """Run the given test files (``None``: the whole suite), one residual per failure."""
        ...

    async def bootstrap(self, root: Path) -> SensorReport:
        """The plugin's build/init checks (for Python: the project metadata is valid)."""
        ...

    async def cross_check(self, root: Path, files: Sequence[str]) -> SensorReport:
        """Whole-workspace consistency: every import between nodes' files resolves."""
        ...


class Ledger(Protocol):
    """The git-backed record of approvals (docs/explanation/ledger.md)."""

    async def export(self, dest: Path) -> None:
        """Materialise the last committed state into the empty directory ``dest``."""
        ...

    async def read(self, path: str) -> bytes | None:
        """The workspace file's current bytes (``None`` when absent)."""
        ...

    async def head(self) -> str | None:
        """The commit ``export`` materialises (``HEAD``), ``None`` before the first commit."""
        ...

    async def check_ready(self) -> None:
        """Refuse (:class:`LedgerRefused`) when no ledger commit could be made now (git
        mid-operation, detached ``HEAD``): asked at session start, before anything is written."""
        ...

    async def commit(
        self,
        changes: Mapping[str, bytes | None],
        base: Mapping[str, bytes | None],
        message: str,
        trailers: Mapping[str, str],
    ) -> str:
        """Write ``changes`` (``None`` deletes) into the workspace and commit exactly them.

        Refuses with :class:`ConflictError` when a workspace file differs from ``base``, and
        with :class:`LedgerRefused` when git's state, a user's hook or signing forbids it.
        Other files, the user's staged and unstaged changes, stay as they were.
        """
        ...

    async def settle_index(self, paths: Sequence[str]) -> None:
        """After a crash between a commit and the index update: re-sync those index entries."""
        ...

    async def merge(
        self, base: bytes | None, ours: bytes | None, theirs: bytes | None
    ) -> bytes | None:
        """Three-way merge of one file's contents; ``None`` when they conflict."""
        ...

    async def entries(self, limit: int | None = None) -> list[LedgerEntry]: ...

    async def show(self, entry: str) -> tuple[LedgerEntry, str]:
        """The entry and its patch."""
        ...

    async def rollback(self, entry: str) -> str:
        """Revert one entry with a new commit (itself an entry); returns its sha."""
        ...


class SessionRecords(Protocol):
    """The session store scoped to one session (``SessionStore.session``): what the engine
    records as a session goes, and the little it reads back to resume (the records are in
    ``keel.engine.records``; docs/explanation/architecture.md#store-records)."""

    @property
    def session_id(self) -> str: ...

    async def create_session(self, task: str, config: JsonObject) -> None: ...

    async def update_session_config(self, values: JsonObject) -> None:
        """Change keys of the stored configuration (a resume raising the budgets)."""
        ...

    async def node_states(self) -> Mapping[str, str]:
        """Each recorded node's current state."""
        ...

    async def record_plan(self, plan: JsonObject) -> None: ...

    async def set_node_state(self, node_id: str, state: str, detail: str = "") -> None: ...

    async def record_attempt(self, attempt: AttemptRecord) -> None:
        """Record one attempt; recording the same attempt again (a resume) replaces it."""
        ...

    async def record_model_call(self, call: ModelCall) -> None: ...

    async def record_approval(
        self,
        node_id: str,
        decision: str,
        actor: str,
        ledger_sha: str | None,
        note: str = "",
        *,
        bundle: str | None = None,
        files: Sequence[str] | None = None,
    ) -> None:
        """A decision. An approval is recorded before its commit (``ledger_sha`` None), with
        the ``bundle`` id it approves and the ``files`` chosen (None: all of them)."""
        ...

    async def confirm_approval(self, node_id: str, ledger_sha: str, actor: str) -> ApprovalRecord:
        """The node's pending approval was committed as ``ledger_sha``: that approval, now
        holding the sha. An approval already holding it is returned as it is."""
        ...

    async def pending_approval(self, node_id: str, bundle: str) -> ApprovalRecord | None:
        """A recorded approval of ``bundle`` whose commit never happened (a crash), if any."""
        ...

    async def record_escalation(self, node_id: str, report: JsonObject) -> None: ...

    async def record_event(self, event: Event) -> None:
        """Store ``event`` (stamped) as its JSON object, keyed by its type."""
        ...

    async def finish_session(self, outcome: str, totals: JsonObject) -> None: ...

    async def begin_step(self, step_id: str, kind: str, detail: JsonObject) -> None:
        """The intent record of a side-effecting step, durable before the step runs."""
        ...

    async def finish_step(
        self, step_id: str, result: JsonObject, call: ModelCall | None = None
    ) -> None:
        """The result record; a model ``call`` is recorded in the same transaction."""
        ...

    async def call_totals(self) -> CallTotals:
        """Calls, tokens, cost and the largest call's cost recorded for the session."""
        ...

    async def step_result(self, step_id: str) -> JsonObject | None:
        """A finished step's recorded result (a resumed session replays it), else None."""
        ...

    async def begin_run(self, pid: int, host: str) -> int: ...

    async def end_run(self, run_id: int) -> None: ...

    async def abort_requested(self) -> bool: ...


class SessionStore(Protocol):
    """The session store (docs/explanation/architecture.md#store): per-session records through
    :meth:`session`, and the workspace's baselines, which belong to no session."""

    def session(self, session_id: str) -> SessionRecords:
        """The store scoped to ``session_id`` (the session need not exist yet)."""
        ...

    async def baseline(self, head: str, environment: str) -> JsonObject | None:
        """The baseline measured at commit ``head`` in ``environment``, if one was stored."""
        ...

    async def record_baseline(self, head: str, environment: str, record: JsonObject) -> None:
        """Store (or replace) the baseline of commit ``head`` in ``environment``."""
        ...

    async def close(self) -> None: ...


class FaultPoint(Protocol):
    """Named crash points for fault-injection tests (implemented by ``keel.faults``)."""

    def hit(self, point: str) -> None: ...


class NoFaults:
    """The default: no crash point is armed."""

    def hit(self, point: str) -> None:
        return None


class EditorEvidence(Protocol):
    """The diagnostics an editor's own language servers report (``keel serve`` has them).

    Headless runs have none (``Engine.editor`` is ``None``). The final sheaf check adds what
    the editor reports about the committed files to its own sensors' findings.
    """

    async def diagnostics(self, root: Path, files: Sequence[str]) -> SensorReport:
        """V_syn residuals for ``files`` (relative to ``root``), from reports about exactly
        the content the files have under ``root``; reports about other text do not count."""
        ...


class EventSink(Protocol):
    """Receives every engine event as its typed record (docs/reference/events.md)."""

    def emit(self, event: Event) -> None: ...


@dataclass(frozen=True)
class ApprovalRequest:
    """A stable bundle that policy says a person must look at before it is committed.

    ``changes`` are the proposed bytes per path (``None`` deletes) and ``base`` what the
    bundle was made against, so a front end can build diffs and workspace edits. ``energy``
    is the verified energy and ``evidence`` what stands behind it.
    """

    session_id: str
    node_id: str
    title: str
    bundle_id: str
    diff: str
    energy: Mapping[str, float]
    complexity: int
    changes: Mapping[str, bytes | None] = field(default_factory=dict)
    base: Mapping[str, bytes | None] = field(default_factory=dict)
    evidence: Sequence[JsonObject] = ()
    owns: Sequence[str] = ()


@dataclass(frozen=True)
class Decision:
    """The reviewer's answer.

    ``feedback`` on a rejection reaches the model's next attempt. A ``correction`` is a
    rejection whose next attempt builds on the bundle (its files shown as proposed, changed
    as the feedback asks) instead of starting afresh from the committed state.

    ``files`` approves only those workspace-relative paths; the rest of the bundle is
    re-verified and proposed again. ``edits`` (with ``approved``
    false) replaces files of the bundle with the reviewer's own version: the edited bundle is
    verified and proposed again, without a model call; a file "edited" back to its ``base``
    leaves the bundle (the reviewer rejected that file alone). ``created`` names new files
    of the bundle that the reviewer's editor already created, empty, while applying the
    approval (an LSP ``CreateFile``); the commit takes an empty file there for "absent".

    ``hunks`` names hunks of the bundle (ids of ``keel.bundles.hunks``; not with ``files``).
    Approved: the chosen hunks applied to the base are verified again as a bundle of their
    own and committed when stable (else the settlement says why and the bundle is asked
    about again); the other hunks are verified again on top and proposed again. Rejected:
    those hunks leave the bundle, the rest is verified again and proposed again (none left:
    a whole rejection), and the hunks' lines with ``feedback`` reach the model's next
    attempt.
    """

    approved: bool
    actor: str = "user"
    feedback: str = ""
    files: Sequence[str] | None = None
    edits: Mapping[str, bytes | None] | None = None
    created: Sequence[str] = ()
    hunks: Sequence[str] | None = None
    correction: bool = False


@dataclass(frozen=True)
class Settlement:
    """What became of an approved bundle: the ledger sha, or why it could not be committed."""

    ledger_sha: str | None
    error: str | None = None
    committed: Sequence[str] = ()


class Approver(Protocol):
    """Whoever can approve: a terminal prompt, the editor, or nobody (headless without -y)."""

    async def review(self, request: ApprovalRequest) -> Decision | None:
        """The decision, or ``None`` when nobody can decide now (the node awaits approval)."""
        ...

    async def approve_command(self, node_id: str, command: str) -> bool:
        """Whether a model-proposed command outside the allow-list may run."""
        ...

    async def settled(self, request: ApprovalRequest, settlement: Settlement) -> None:
        """Called after an approved bundle was committed, or failed to be."""
        ...


class Sandbox(Protocol):
    """Confines every process that runs project or model code (docs/explanation/sandbox.md).

    ``wrap`` turns the command line of one such process into the command line that runs it
    confined: ``cwd`` (the node's sandbox directory) and ``writable`` are the only places it
    may write, ``readonly`` are extra directories it may read (a project's virtualenv or
    toolchain). ``env`` is the already scrubbed environment the process gets. Linux uses
    bubblewrap; a macOS Seatbelt profile can implement the same port.
    """

    @property
    def mode(self) -> str:
        """``"bubblewrap"`` (or another confining backend), or ``"off"``."""
        ...

    def describe(self) -> dict[str, object]:
        """What the sandbox enforces, for ``session_started`` and ``status``."""
        ...

    def wrap(
        self,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        *,
        writable: Sequence[Path] = (),
        readonly: Sequence[Path] = (),
    ) -> list[str]: ...


@dataclass(frozen=True)
class RepoMap:
    """The ranked repository map as a model gets it (see docs/explanation/context.md).

    ``included`` are the files shown with an outline, ``summarised`` those shown by one line,
    ``listed`` those shown by path only, ``omitted`` those left out for the budget (counted by
    folder in ``text``); together they are every file of the inventory. ``tokens`` is
    ``len(text) // 4``.
    """

    text: str
    included: tuple[str, ...] = ()
    omitted: tuple[str, ...] = ()
    tokens: int = 0
    summarised: tuple[str, ...] = ()
    listed: tuple[str, ...] = ()


class RepositoryContext(Protocol):
    """What the models see of the workspace's code, chosen for a task and bounded."""

    async def render_map(
        self, task: str, *, focus: Sequence[str] = (), budget_tokens: int
    ) -> RepoMap:
        """The files ranked for ``task`` (``focus``: files the user is on, ranked first),
        rendered as outlines within ``budget_tokens``; what did not fit is named."""
        ...

    async def related_definitions(self, paths: Sequence[str], *, budget_tokens: int) -> str:
        """Outlines of the definitions the code in ``paths`` uses from other files, within
        ``budget_tokens`` (empty when there are none)."""
        ...


class StructuredModeMemory(Protocol):
    """Which structured-output mode an endpoint accepts, remembered across sessions
    (``docs/reference/configuration.md``, ``structured``): the store implements it."""

    async def structured_mode(self, endpoint: str, model: str) -> str | None:
        """The mode last found to work for ``model`` at ``endpoint``, or ``None``."""
        ...

    async def remember_structured_mode(self, endpoint: str, model: str, mode: str) -> None:
        """Record that ``endpoint`` refused the modes before ``mode`` and accepted it."""
        ...
