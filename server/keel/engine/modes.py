"""The read-only modes: ``keel plan`` (explore and plan, nothing else) and ``keel explain``.

Both see the workspace the way a session's architect does (:mod:`keel.engine.planning`) and
write nothing: no store, no ledger, no sandbox, no file. Their model calls go through the
same gateway as a session's (budgets, schema validation, redaction), over an in-memory
:class:`EphemeralStore` that is dropped when the command ends.

Both may explore first, like a session's architect: the read-only tools of
:class:`~keel.engine.ports.ExplorationTools`, within ``[context] explore_turns`` and
``explore_tokens`` (either 0: no tools are offered). Each call run is reported as an
:class:`Explored` (``keel plan``/``keel explain`` print it; ``explore`` in their JSON).

An explanation's citations are checked against the workspace: a citation of a file that is
not there, outside the workspace, or past the file's end is dropped, and the reply says which
and why.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import unicodedata
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.bundles.paths import PathError, normalize, resolve_inside
from keel.engine import prompts
from keel.engine.events import Event
from keel.engine.gateway import Exploration, ModelGateway
from keel.engine.guard import secret_looking
from keel.engine.models import Tier
from keel.engine.planner import PlanScope
from keel.engine.planning import draft_plan, present_focus, workspace_view
from keel.engine.ports import (
    ExplorationTools,
    KeelError,
    LanguagePlugin,
    ModelClient,
    RepositoryContext,
)
from keel.engine.records import ApprovalRecord, AttemptRecord, CallTotals, JsonObject, ModelCall
from keel.engine.redaction import Redactor, redact
from keel.engine.replies import Citation, Explanation, PlanNode, TaskPlan
from keel.engine.settings import EngineSettings
from keel.engine.verifier import read_texts

EXPLAIN_ATTEMPTS = 3
#: At most this many files named by the question or defining its symbols are shown.
RELEVANT_FILES = 4
#: Files larger than this are not searched for definitions.
SEARCH_MAX_BYTES = 512_000


class ExplainFailed(KeelError):
    """The model gave no valid explanation in its attempts."""


@dataclass(frozen=True)
class Dropped:
    """A citation that was not kept, and why."""

    path: str
    line: int
    reason: str


@dataclass(frozen=True)
class Explored:
    """One read-only tool call the architect made, as ``keel plan``/``explain`` report it."""

    tool: str
    arguments: Mapping[str, Any]
    #: Characters of the result the model read (a refusal too).
    chars: int
    refused: bool
    #: Why the policy refused it, as the model read it ("" when it ran).
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "arguments": dict(self.arguments),
            "chars": self.chars,
            "refused": self.refused,
            "reason": self.reason,
        }

    def line(self) -> str:
        """``open_file(path=".git/config"): refused: ...`` or ``search_code(...): 42 chars``."""
        arguments = ", ".join(
            f"{key}={json.dumps(value, default=str)}" for key, value in self.arguments.items()
        )
        outcome = f"refused: {_printable(self.reason)}" if self.refused else f"{self.chars} chars"
        return f"{_printable(self.tool)}({arguments}): {outcome}"


def _printable(text: str) -> str:
    """``text`` with control characters escaped: the model chose it, and a terminal shows it."""
    return "".join(
        ascii(char)[1:-1] if unicodedata.category(char).startswith("C") else char for char in text
    )


@dataclass(frozen=True)
class Explained:
    """An answer with the citations that hold and the ones that did not."""

    question: str
    answer: str
    citations: tuple[Citation, ...]
    dropped: tuple[Dropped, ...] = ()
    #: The tool calls run before the answer, in order.
    explored: tuple[Explored, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.answer,
            "citations": [c.model_dump() for c in self.citations],
            "dropped": [vars(d) for d in self.dropped],
            "explore": [e.as_dict() for e in self.explored],
        }


@dataclass
class ReadOnlyModes:
    """``keel plan`` and ``keel explain`` for one workspace, built by ``keel.app``."""

    workspace: Path
    clients: Mapping[Tier, ModelClient]
    plugins: Sequence[LanguagePlugin]
    settings: EngineSettings
    secrets: Mapping[str, str] = field(default_factory=dict)
    scope: PlanScope | None = None
    #: The ranked repository map, as a session's architect gets it (None: the plain listing).
    context: RepositoryContext | None = None
    #: The architect's read-only tools (None: no exploration).
    explorer: ExplorationTools | None = None

    def _gateway(self, kind: str) -> ModelGateway:
        label = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        return ModelGateway(
            self.clients,
            EphemeralStore(label),
            budget=self.settings.budget,
            log_llm=False,
            redact=Redactor(self.secrets),
            max_reply_tokens=self.settings.max_reply_tokens,
        )

    def _exploration(self, on_explore: Callable[[Explored], None] | None) -> Exploration | None:
        """The tools and budget a session's architect gets; ``on_explore`` hears of each call."""
        settings = self.settings
        if self.explorer is None or settings.explore_turns <= 0 or settings.explore_tokens <= 0:
            return None
        redactor = Redactor(self.secrets)

        async def explored(record: Mapping[str, Any]) -> None:
            if on_explore is None:
                return
            refused = bool(record["refused"])
            text = str(record["text"]).strip().removeprefix("refused:").strip()
            reason = (text.splitlines() or [""])[0] if refused else ""
            arguments = record["arguments"]
            on_explore(
                Explored(
                    tool=redactor(str(record["tool"])),
                    arguments=redact(arguments, redactor) if isinstance(arguments, Mapping) else {},
                    chars=int(record["chars"]),
                    refused=refused,
                    reason=reason,
                )
            )

        return Exploration(
            self.explorer,
            max_turns=settings.explore_turns,
            max_tokens=settings.explore_tokens,
            on_call=explored,
        )

    async def plan(
        self,
        task: str,
        on_invalid: Callable[[int, list[str]], None] | None = None,
        focus: Sequence[str] = (),
        on_explore: Callable[[Explored], None] | None = None,
    ) -> TaskPlan:
        """Explore and plan exactly as a session would; raises PlanningFailed. ``focus``:
        files listed first (the editor's current file); ``on_explore`` hears of each tool
        call the architect makes."""
        redactor = Redactor(self.secrets)

        def invalid(attempt: int, errors: list[str]) -> None:
            if on_invalid is not None:
                on_invalid(attempt, [redactor(error) for error in errors])

        gateway = self._gateway("plan")
        return await draft_plan(
            self.workspace,
            gateway,
            self.plugins,
            task,
            invalid,
            self.scope,
            focus,
            context=self.context,
            map_tokens=self.settings.map_tokens,
            explore=self._exploration(on_explore),
        )

    async def explain(
        self,
        question: str,
        focus: Sequence[str] = (),
        on_explore: Callable[[Explored], None] | None = None,
    ) -> Explained:
        """A read-only answer; raises ExplainFailed after EXPLAIN_ATTEMPTS bad replies.
        ``focus``: files shown first (the editor's current file); the model may explore
        first, and ``on_explore`` hears of each tool call (the answer lists them too)."""
        view = await workspace_view(
            self.workspace,
            self.plugins,
            focus,
            task=question,
            context=self.context,
            map_tokens=self.settings.map_tokens,
        )
        # The map's ranked files first: on a large repository they reach past the listing.
        candidates = list(dict.fromkeys([*view.ranked, *view.listing]))
        relevant = await _relevant_files(self.workspace, question, candidates, focus)
        gateway = self._gateway("explain")
        redactor = Redactor(self.secrets)
        explored: list[Explored] = []

        def heard(call: Explored) -> None:
            explored.append(call)
            if on_explore is not None:
                on_explore(call)

        explore = self._exploration(heard)
        errors: list[str] = []
        for attempt in range(1, EXPLAIN_ATTEMPTS + 1):
            prompt = prompts.explain_prompt(
                question,
                view.listing,
                view.key_files,
                relevant,
                view.languages,
                errors,
                repo_map=view.repo_map,
            )
            if explore is not None:
                prompt += "\n\n" + prompts.explain_explore_hint(
                    explore.max_turns, explore.max_tokens
                )
            reply = await gateway.ask(
                Tier.ARCHITECT,
                Explanation,
                system=prompts.EXPLAIN_SYSTEM,
                prompt=prompt,
                node_id=None,
                attempt=attempt,
                explore=explore,
            )
            if reply.value is not None:
                kept, dropped = await asyncio.to_thread(
                    check_citations, self.workspace, reply.value.citations
                )
                return Explained(
                    question,
                    redactor(reply.value.answer),
                    tuple(kept),
                    tuple(dropped),
                    tuple(explored),
                )
            errors = [reply.error or "the reply was not an explanation"]
        raise ExplainFailed(
            f"no valid explanation after {EXPLAIN_ATTEMPTS} attempts: "
            + "; ".join(redactor(e) for e in errors)
        )


def check_citations(
    workspace: Path, citations: Sequence[Citation]
) -> tuple[list[Citation], list[Dropped]]:
    """The citations that name an existing line of a workspace file, and the others."""
    kept: list[Citation] = []
    dropped: list[Dropped] = []
    counts: dict[str, int] = {}
    for citation in citations:
        try:
            path = normalize(citation.path)
            target = resolve_inside(workspace, path)
        except PathError as exc:
            dropped.append(Dropped(citation.path, citation.line, str(exc)))
            continue
        if path not in counts:
            counts[path] = _line_count(target)
        lines = counts[path]
        if lines < 0:
            dropped.append(Dropped(path, citation.line, "no such file in the workspace"))
        elif citation.line > lines:
            dropped.append(Dropped(path, citation.line, f"{path} has only {lines} lines"))
        elif (path, citation.line) not in {(c.path, c.line) for c in kept}:
            kept.append(Citation(path=path, line=citation.line))
    return kept, dropped


def _line_count(target: Path) -> int:
    """Lines of a regular file; -1 when it is missing or not a file."""
    if not target.is_file():
        return -1
    count, last = 0, b"\n"
    with target.open("rb") as handle:
        while chunk := handle.read(1 << 16):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (0 if last == b"\n" else 1)


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")


async def _relevant_files(
    workspace: Path, question: str, listing: Sequence[str], focus: Sequence[str] = ()
) -> dict[str, str | None]:
    """Files the question names, then files defining the identifiers it mentions.

    The repository map (when there is one) shows outlines of the files ranked for the
    question; these few are shown whole, with line numbers, so the answer can cite lines.
    """
    listing = [path for path in listing if _may_show(workspace, path)]
    named = [path for path in listing if _mentions(question, path)]
    symbols = {token for token in _IDENTIFIER.findall(question) if not token.islower()}
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", question.strip()):  # a bare SYMBOL
        symbols.add(question.strip())
    symbols |= {t for t in re.findall(r"`([A-Za-z_][A-Za-z0-9_.]*)`", question)}
    symbols |= {t[:-2] for t in re.findall(r"[A-Za-z_][A-Za-z0-9_]*\(\)", question)}
    wanted = {s.rsplit(".", 1)[-1] for s in symbols if s}
    defining = await asyncio.to_thread(_defining, workspace, listing, wanted) if wanted else []
    first = present_focus(listing, focus)
    chosen = list(dict.fromkeys([*named, *defining, *first]))[:RELEVANT_FILES]
    return await asyncio.to_thread(read_texts, workspace, chosen, 24_000)


def _may_show(workspace: Path, path: str) -> bool:
    """Not secret-looking, and really inside the workspace (no symlink out of it)."""
    if secret_looking(path):
        return False
    try:
        resolve_inside(workspace, normalize(path))
    except PathError:
        return False
    return True


def _mentions(question: str, path: str) -> bool:
    return re.search(r"(?<![\w/.-])" + re.escape(path) + r"(?![\w/-])", question) is not None


def _defining(workspace: Path, listing: Sequence[str], symbols: set[str]) -> list[str]:
    names = "|".join(sorted(re.escape(s) for s in symbols))
    pattern = re.compile(
        r"^\s*(?:(?:async\s+)?def|class|fn|pub\s+fn|struct|enum|trait|function|func|type|"
        r"interface|const|let|var)\s+(?:" + names + r")\b|^(?:" + names + r")\s*[:=]",
        re.MULTILINE,
    )
    found = []
    for path in listing:
        target = workspace / path
        try:
            if target.stat().st_size > SEARCH_MAX_BYTES:
                continue
            text = target.read_text(errors="replace")
        except OSError:
            continue
        if pattern.search(text):
            found.append(path)
            if len(found) >= RELEVANT_FILES:
                break
    return found


# -- rendering ----------------------------------------------------------------------------


def ordered(plan: TaskPlan) -> list[PlanNode]:
    """The plan's nodes in an order they can run (dependencies first, else plan order)."""
    done: set[str] = set()
    out = []
    pending = list(plan.nodes)
    while pending:
        ready = [n for n in pending if set(n.depends_on) <= done] or pending[:1]
        node = ready[0]
        pending.remove(node)
        done.add(node.id)
        out.append(node)
    return out


def _code(items: Sequence[str]) -> str:
    return ", ".join(f"`{item}`" for item in items) or "-"


def plan_markdown(task: str, plan: TaskPlan) -> str:
    """The plan as Markdown: what ``keel plan`` prints and the editors show."""
    lines = [f"# Plan: {task}", "", f"{len(plan.nodes)} node(s), in an order they can run."]
    for node in ordered(plan):
        lines += ["", f"## {node.id}: {node.title}", "", f"- kind: {node.kind.value}"]
        lines.append(f"- owns: {_code(node.owns)}")
        if node.context:
            lines.append(f"- reads: {_code(node.context)}")
        lines.append(f"- depends on: {', '.join(node.depends_on) or '-'}")
        if node.commands:
            lines.append(f"- commands: {_code(node.commands)}")
        if node.contract.symbols:
            lines.append(f"- defines: {_code(node.contract.symbols)}")
        if node.contract.forbidden:
            lines.append(f"- must not contain: {_code(node.contract.forbidden)}")
    lines += ["", "Nothing was changed: `keel agent` with the same task runs it."]
    return "\n".join(lines)


def explanation_markdown(
    explained: Explained, link: Callable[[str, int], str] | None = None
) -> str:
    """The answer, its sources and the dropped citations as Markdown."""
    lines = [f"# {explained.question}", "", explained.answer.strip()]
    if explained.citations:
        lines += ["", "## Sources", ""]
        for c in explained.citations:
            place = f"{c.path}:{c.line}"
            lines.append(f"- [{place}]({link(c.path, c.line)})" if link else f"- {place}")
    if explained.dropped:
        lines += ["", "## Dropped citations", ""]
        lines += [f"- {d.path}:{d.line}: {d.reason}" for d in explained.dropped]
    return "\n".join(lines)


class EphemeralStore:
    """One command's records in memory: the read-only modes' model calls are kept nowhere.

    Only what the gateway uses holds data (steps and calls, for this one command); every
    other record is accepted and dropped.
    """

    def __init__(self, session_id: str = "ephemeral") -> None:
        self._session_id = session_id
        self.steps: dict[str, JsonObject] = {}
        self.calls: list[ModelCall] = []

    @property
    def session_id(self) -> str:
        return self._session_id

    async def create_session(self, task: str, config: JsonObject) -> None:
        return None

    async def update_session_config(self, values: JsonObject) -> None:
        return None

    async def node_states(self) -> Mapping[str, str]:
        return {}

    async def record_plan(self, plan: JsonObject) -> None:
        return None

    async def set_node_state(self, node_id: str, state: str, detail: str = "") -> None:
        return None

    async def record_attempt(self, attempt: AttemptRecord) -> None:
        return None

    async def record_model_call(self, call: ModelCall) -> None:
        self.calls.append(call)

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
        return None

    async def confirm_approval(self, node_id: str, ledger_sha: str, actor: str) -> ApprovalRecord:
        return ApprovalRecord(0, node_id, "approved", actor, ledger_sha)

    async def pending_approval(self, node_id: str, bundle: str) -> ApprovalRecord | None:
        return None

    async def record_escalation(self, node_id: str, report: JsonObject) -> None:
        return None

    async def record_event(self, event: Event) -> None:
        return None

    async def finish_session(self, outcome: str, totals: JsonObject) -> None:
        return None

    async def begin_step(self, step_id: str, kind: str, detail: JsonObject) -> None:
        return None

    async def finish_step(
        self, step_id: str, result: JsonObject, call: ModelCall | None = None
    ) -> None:
        self.steps[step_id] = result
        if call is not None:
            self.calls.append(call)

    async def call_totals(self) -> CallTotals:
        return CallTotals(calls=len(self.calls))

    async def step_result(self, step_id: str) -> JsonObject | None:
        return self.steps.get(step_id)

    async def begin_run(self, pid: int, host: str) -> int:
        return 0

    async def end_run(self, run_id: int) -> None:
        return None

    async def abort_requested(self) -> bool:
        return False
