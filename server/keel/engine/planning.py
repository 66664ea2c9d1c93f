"""What the architect is shown before it plans: one path for ``keel agent``, ``keel plan`` and
``keel explain``.

:func:`workspace_view` gathers the workspace as the model gets it (the file listing, key
files, detected languages) and :func:`draft_plan` asks the architect for a validated plan over
it. A session records the plan afterwards; ``keel plan`` only prints it. Both write nothing.

``focus`` serves "Fix with agent": the files a task is about (the file with the error) come
first in the listing and are the repository map's focus (``RepositoryContext.render_map``),
so they are ranked first and never cut from what the model sees.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from keel.bundles.paths import PathError, normalize
from keel.engine.gateway import Exploration, ModelGateway
from keel.engine.guard import PromptFile, read_for_prompt
from keel.engine.planner import PlanInputs, Planner, PlanScope
from keel.engine.ports import LanguagePlugin, RepoMap, RepositoryContext
from keel.engine.replies import TaskPlan
from keel.engine.verifier import tree_files

log = logging.getLogger(__name__)

KEY_FILES = ("pyproject.toml", "Cargo.toml", "package.json", "requirements.txt", "README.md")
KEY_FILE_CHARS_WITH_MAP = 1_500
"""Each key file's cut when the repository map carries the code (the map needs the room)."""
#: How many workspace paths the architect's prompt lists (without a repository map).
LISTING_LIMIT = 300


@dataclass(frozen=True)
class WorkspaceView:
    """The workspace as the architect sees it."""

    listing: list[str]
    key_files: Sequence[PromptFile]
    languages: list[str]
    #: The ranked repository map, shown instead of ``listing`` when there is one.
    repo_map: str | None = None
    #: The files the map shows (outlined or summarised), most relevant first.
    ranked: tuple[str, ...] = ()


@dataclass(frozen=True)
class PreviousSession:
    """The finished session a follow-up continues (``POST /api/v1/sessions/{id}/continue``):
    its task, plan, ledger entries and outcome, shown to the architect with the new task."""

    session_id: str
    task: str
    outcome: str
    reason: str = ""
    #: One line per planned node: ``node-1: title (owns a.py, b.py)``.
    plan: Sequence[str] = ()
    #: One line per ledger entry of the session: ``sha12 node-1 title: a.py, b.py``.
    ledger: Sequence[str] = ()

    def block(self) -> str:
        """The text the architect reads after the task."""
        lines = [
            f"This task follows up session {self.session_id}, which is finished.",
            f"Its task was: {self.task}",
            f"Its outcome: {self.outcome}" + (f" ({self.reason})" if self.reason else ""),
            "Its plan:",
            *(f"- {line}" for line in self.plan or ["(no plan was recorded)"]),
            "What it committed (ledger entries, newest first):",
            *(f"- {line}" for line in self.ledger or ["(nothing)"]),
            "Plan only what the new task asks; the files above are in the workspace now.",
        ]
        return "\n".join(lines)


def with_previous(task: str, previous: PreviousSession | None) -> str:
    """The architect's task text: ``task``, then what the previous session did."""
    return task if previous is None else f"{task}\n\n{previous.block()}"


def focus_of(scope: PlanScope | None) -> tuple[str, ...]:
    """The files a session is about: "Fix with agent" names the file of the error."""
    return scope.must_own if scope is not None else ()


def present_focus(listing: Sequence[str], focus: Sequence[str]) -> list[str]:
    """The focus files that are in ``listing``, normalised, once each, in the order given."""
    present = set(listing)
    found: list[str] = []
    for raw in focus:
        try:
            path = normalize(raw)
        except PathError:
            continue
        if path in present and path not in found:
            found.append(path)
    return found


def focus_first(listing: Sequence[str], focus: Sequence[str]) -> list[str]:
    """``listing`` with the focus files that exist first, in the order given."""
    first = present_focus(listing, focus)
    return first + [path for path in listing if path not in first]


async def repository_map(
    context: RepositoryContext | None, task: str, focus: Sequence[str], budget_tokens: int
) -> RepoMap | None:
    """The map ranked for ``task`` (``focus`` first), or ``None`` without one.

    The map is advice: if building it fails, the model gets the plain listing and a warning
    is logged, rather than the command failing.
    """
    if context is None:
        return None
    try:
        ranked = await context.render_map(task, focus=list(focus), budget_tokens=budget_tokens)
    except Exception as exc:  # any failure falls back to the listing
        log.warning("repository map unavailable, using the file listing: %s", exc)
        return None
    return ranked


async def workspace_view(
    workspace: Path,
    plugins: Sequence[LanguagePlugin],
    focus: Sequence[str] = (),
    *,
    task: str = "",
    context: RepositoryContext | None = None,
    map_tokens: int = 0,
) -> WorkspaceView:
    listing = await asyncio.to_thread(tree_files, workspace)
    ranked = await repository_map(context, task, focus, map_tokens)
    repo_map = ranked.text if ranked is not None else None
    key_files = await asyncio.to_thread(
        read_for_prompt,
        workspace,
        [f for f in KEY_FILES if f in listing],
        8_000 if repo_map is None else KEY_FILE_CHARS_WITH_MAP,
    )
    return WorkspaceView(
        focus_first(listing, focus)[:LISTING_LIMIT],
        key_files,
        [p.name for p in plugins],
        repo_map,
        (*ranked.included, *ranked.summarised) if ranked is not None else (),
    )


async def draft_plan(
    workspace: Path,
    gateway: ModelGateway,
    plugins: Sequence[LanguagePlugin],
    task: str,
    on_invalid: Callable[[int, list[str]], None],
    scope: PlanScope | None = None,
    focus: Sequence[str] = (),
    *,
    context: RepositoryContext | None = None,
    map_tokens: int = 0,
    explore: Exploration | None = None,
    previous: PreviousSession | None = None,
    on_repaired: Callable[[int, list[str]], None] | None = None,
) -> TaskPlan:
    """Explore and plan: a validated plan, or :class:`~keel.engine.planner.PlanningFailed`.

    ``focus`` adds files to the scope's (the editor's current file for ``keel.server.plan``);
    they come first in the listing and are the repository map's focus. ``explore`` lets the
    architect call read-only tools before it answers. ``previous`` (a follow-up) shows the
    architect the session it continues. ``on_repaired`` hears what Keel repaired in the plan
    it returns (:mod:`keel.engine.repair`).
    """
    views: list[PlanInputs] = []

    async def inputs() -> PlanInputs:
        # Only for a prompt that is sent: a resumed session replays a recorded plan without
        # listing the workspace or building its map (docs/benchmarks.md, start-up).
        if not views:
            view = await workspace_view(
                workspace,
                plugins,
                [*focus_of(scope), *focus],
                task=task,
                context=context,
                map_tokens=map_tokens,
            )
            views.append(PlanInputs(view.listing, view.key_files, view.languages, view.repo_map))
        return views[0]

    planner = Planner(
        gateway, on_invalid, scope, root=workspace, explore=explore, on_repaired=on_repaired
    )
    return await planner.plan_lazily(with_previous(task, previous), inputs)


def plan_dict(plan: TaskPlan) -> Mapping[str, object]:
    """The plan as JSON (``keel plan --json``, ``keel.server.plan``)."""
    return plan.model_dump(mode="json")
