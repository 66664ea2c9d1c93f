"""The architect: a task becomes a validated DAG of nodes, or the session stops.

Validation enforces the contract's rules (unique ids, known dependencies, no cycles, every
file owned by exactly one node, unit_test nodes depending on the nodes they test) and what
the plan may name: ids are safe names, titles plain text, and every path it writes or reads
passes :func:`keel.engine.guard.check_plan_path`. Up to three architect attempts are made;
each failed attempt's problems are sent back in the next prompt.

Before validation, :func:`keel.engine.repair.repair_plan` fixes the mistakes that have one
obvious fix (two nodes owning one file, a file named in ``depends_on``, ...); each repair is
reported (``on_repaired``, the ``plan_repaired`` event) and the repaired plan is validated
like any other, so a repair can never let through what validation refuses.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from keel.bundles.paths import PathError, normalize
from keel.engine import prompts
from keel.engine.gateway import Exploration, ModelGateway
from keel.engine.guard import PromptFile, check_plan_path, node_id_problem, title_problem
from keel.engine.models import NodeKind, Tier
from keel.engine.ports import KeelError
from keel.engine.repair import Repaired, ancestors, repair_plan
from keel.engine.replies import PlanNode, TaskPlan

PLAN_ATTEMPTS = 3

log = logging.getLogger(__name__)


class PlanningFailed(KeelError):
    """The architect produced no valid plan in its attempts."""


@dataclass(frozen=True)
class PlanScope:
    """Limits a session puts on its plan beyond the contract's rules.

    "Fix with agent" in the editor asks for one node owning the file with the error: saying so
    in the task is a request, this is the check, so a plan that sprawls is sent back.
    """

    max_nodes: int | None = None
    must_own: tuple[str, ...] = ()


def validate_plan(
    plan: TaskPlan, scope: PlanScope | None = None, root: Path | None = None
) -> list[str]:
    """Every rule the plan breaks, as sentences the architect can act on.

    With ``root`` (the workspace), paths are also checked where they lead: a symlink out of
    the tree or to a secret is refused. That reads the file system: call it in a thread.
    """
    errors: list[str] = []
    ids = [node.id for node in plan.nodes]
    seen: set[str] = set()
    for node_id in ids:
        if node_id in seen:
            errors.append(f"node id {node_id} is used twice: give each node its own id")
        seen.add(node_id)
        if problem := node_id_problem(node_id):
            errors.append(problem)
    owners: dict[str, str] = {}
    owned_by = {path: node.id for node in plan.nodes for path in node.owns}
    for node in plan.nodes:
        if problem := title_problem(node.id, node.title):
            errors.append(problem)
        for raw in node.context:
            try:
                check_plan_path(raw, root)
            except PathError as exc:
                errors.append(f"{node.id} reads an invalid context path: {exc}")
        for dep in node.depends_on:
            if dep not in seen and dep in owned_by:
                errors.append(
                    f"{node.id} depends on {dep}, which is a file: name the node that owns "
                    f"it ({owned_by[dep]}) in depends_on"
                )
            elif dep not in seen:
                errors.append(
                    f"{node.id} depends on unknown node {dep}: name only ids of this plan"
                )
            elif dep == node.id:
                errors.append(f"{node.id} depends on itself")
        if node.kind is not NodeKind.COMMAND and not node.owns:
            errors.append(
                f"{node.id} is a {node.kind.value} node but owns no files: list the files "
                "it writes in owns"
            )
        if node.kind is NodeKind.COMMAND and not (node.owns or node.commands):
            errors.append(f"{node.id} is a command node with neither files nor commands")
        for raw in node.owns:
            try:
                path = check_plan_path(raw, root)
            except PathError as exc:
                errors.append(f"{node.id} owns an invalid path: {exc}")
                continue
            if owners.get(path) == node.id:
                errors.append(f"{node.id} lists {path} twice in owns")
            elif path in owners:
                errors.append(
                    f"{path} is owned by both {owners[path]} and {node.id}: give each file "
                    "one owner (one node may write several functions of a file)"
                )
            owners.setdefault(path, node.id)
    for path, owner in owners.items():  # owning a directory owns every file under it
        parent = path
        while "/" in parent:
            parent = parent.rsplit("/", 1)[0]
            if owners.get(parent, owner) != owner:
                errors.append(f"{path} is owned by both {owners[parent]} ({parent}/) and {owner}")
    for node in plan.nodes:
        errors.extend(_parameter_symbols(node))
    cycle = find_cycle({node.id: node.depends_on for node in plan.nodes})
    if cycle:
        errors.append("dependency cycle: " + " -> ".join(cycle))
    errors.extend(_test_dependencies(plan, owners))
    if scope is not None:
        errors.extend(_scope_errors(plan, owners, scope))
    return errors


def _parameter_symbols(node: PlanNode) -> list[str]:
    """Contract symbols that the node's own title shows as a parameter (``greet(name)``):
    the contract check would look for a definition of ``name`` that never comes."""
    parameters: dict[str, str] = {}
    for function, inside in re.findall(r"([A-Za-z_]\w*)\(([^()]*)\)", node.title):
        for part in inside.split(","):
            name = re.match(r"\s*\**([A-Za-z_]\w*)", part)
            if name and name.group(1) != function:
                parameters.setdefault(name.group(1), function)
    return [
        f"{node.id} lists '{symbol}' in contract.symbols but it is a parameter of "
        f"{parameters[symbol]}(): remove it; symbols are names the node defines, such as "
        f"'{parameters[symbol]}'"
        for symbol in node.contract.symbols
        if symbol in parameters
    ]


def _scope_errors(plan: TaskPlan, owners: Mapping[str, str], scope: PlanScope) -> list[str]:
    errors = []
    if scope.max_nodes is not None and len(plan.nodes) > scope.max_nodes:
        errors.append(
            f"this session allows at most {scope.max_nodes} node(s) and the plan has "
            f"{len(plan.nodes)}: merge the work into {scope.max_nodes} node(s)"
        )
    for path in scope.must_own:
        if not _owners_of(path, owners):
            errors.append(f"{path} must be owned by a node of the plan (the task is about it)")
    return errors


def _test_dependencies(plan: TaskPlan, owners: Mapping[str, str]) -> list[str]:
    """A unit_test node depends on what it tests: at least one non-test node, and the owner
    of every file it reads (its ``context``), so those files exist when its tests run.

    Why not "every code node": a plan may test parts separately (one test node per module),
    and the final sheaf check runs the whole suite over everything anyway.
    """
    deps = {node.id: set(node.depends_on) for node in plan.nodes}
    non_tests = {node.id for node in plan.nodes if node.kind is not NodeKind.UNIT_TEST}
    errors = []
    for node in plan.nodes:
        if node.kind is not NodeKind.UNIT_TEST:
            continue
        reachable = ancestors(node.id, deps)
        if not reachable & non_tests:
            errors.append(
                f"unit_test node {node.id} must depend on the code or command node it tests: "
                "add that node's id to its depends_on"
            )
        unmet: dict[str, list[str]] = {}
        for path in node.context:
            for owner in sorted(_owners_of(path, owners) - reachable - {node.id}):
                unmet.setdefault(owner, []).append(path)
        if unmet:
            detail = ", ".join(f"{owner} ({', '.join(paths)})" for owner, paths in unmet.items())
            errors.append(
                f"unit_test node {node.id} reads files it does not depend on; add to its "
                f"depends_on the nodes that own them: {detail}"
            )
    return errors


def _owners_of(raw: str, owners: Mapping[str, str]) -> set[str]:
    """The nodes owning ``raw``: its own owner or an owned parent directory, and, when it is a
    directory, the owners of files inside it. An invalid or unowned path has none."""
    try:
        path = normalize(raw)
    except PathError:
        return set()
    return {
        owner
        for owned, owner in owners.items()
        if owned == path or path.startswith(owned + "/") or owned.startswith(path + "/")
    }


def find_cycle(deps: Mapping[str, Sequence[str]]) -> list[str]:
    """One dependency cycle as a path of ids (first id repeated at the end), or []."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for dep in deps.get(node, ()):
            if dep not in deps:
                continue
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return []

    for node in deps:
        if node not in state and (found := visit(node)):
            return found
    return []


@dataclass(frozen=True)
class PlanInputs:
    """What the architect's prompt shows of the workspace."""

    listing: Sequence[str]
    key_files: Sequence[PromptFile]
    languages: Sequence[str]
    repo_map: str | None = None


class Planner:
    """Asks the architect tier for a plan until one validates."""

    def __init__(
        self,
        gateway: ModelGateway,
        on_invalid: Callable[[int, list[str]], None],
        scope: PlanScope | None = None,
        root: Path | None = None,
        explore: Exploration | None = None,
        on_repaired: Callable[[int, list[str]], None] | None = None,
    ) -> None:
        """``root``: the workspace, for checking where the plan's paths lead (and which
        files exist, for repairs). ``on_repaired`` hears the repairs of the plan returned."""
        self._gateway = gateway
        self._on_invalid = on_invalid
        self._on_repaired = on_repaired
        self._scope = scope
        self._root = root
        self._explore = explore

    async def plan(
        self,
        task: str,
        listing: Sequence[str],
        key_files: Sequence[PromptFile],
        languages: Sequence[str],
        *,
        repo_map: str | None = None,
    ) -> TaskPlan:
        inputs = PlanInputs(listing, key_files, languages, repo_map)

        async def given() -> PlanInputs:
            return inputs

        return await self.plan_lazily(task, given)

    async def plan_lazily(self, task: str, inputs: Callable[[], Awaitable[PlanInputs]]) -> TaskPlan:
        """:meth:`plan`, awaiting ``inputs`` only for a prompt that is sent: a resumed
        session replays its recorded plan without listing or mapping the workspace."""
        errors: list[str] = []
        for attempt in range(1, PLAN_ATTEMPTS + 1):

            async def prompt(errors: list[str] = errors) -> str:
                view = await inputs()
                text = prompts.architect_prompt(
                    task,
                    view.listing,
                    view.key_files,
                    view.languages,
                    errors,
                    repo_map=view.repo_map,
                )
                if self._explore is not None:
                    text += "\n\n" + prompts.explore_hint(
                        self._explore.max_turns, self._explore.max_tokens
                    )
                return text

            reply = await self._gateway.ask(
                Tier.ARCHITECT,
                TaskPlan,
                system=prompts.ARCHITECT_SYSTEM,
                prompt=prompt,
                node_id=None,
                attempt=attempt,
                explore=self._explore,
            )
            if reply.value is None:
                errors = [reply.error or "the reply was not a task_plan"]
            else:
                repaired = await asyncio.to_thread(self._repair, reply.value, task)
                errors = await asyncio.to_thread(
                    validate_plan, repaired.plan, self._scope, self._root
                )
                for repair in repaired.repairs:
                    log.info("plan attempt %d repaired: %s", attempt, repair)
                if not errors:
                    if repaired.repairs and self._on_repaired is not None:
                        self._on_repaired(attempt, repaired.repairs)
                    return _normalized(repaired.plan)
                if repaired.repairs:  # the errors are about the repaired plan: say how
                    errors = [
                        *errors,
                        "(Keel had already repaired the plan: " + "; ".join(repaired.repairs) + ")",
                    ]
            self._on_invalid(attempt, errors)
        raise PlanningFailed(f"no valid plan after {PLAN_ATTEMPTS} attempts: " + "; ".join(errors))

    def _repair(self, plan: TaskPlan, task: str) -> Repaired:
        root = self._root
        if root is None:
            return repair_plan(plan)

        def exists(path: str) -> bool:
            location = root / path
            return location.exists() or location.is_symlink()

        return repair_plan(plan, exists, task)


def _normalized(plan: TaskPlan) -> TaskPlan:
    nodes = [
        node.model_copy(
            update={
                "owns": [normalize(p) for p in node.owns],
                "context": [normalize(p) for p in node.context],
            }
        )
        for node in plan.nodes
    ]
    return plan.model_copy(update={"nodes": nodes})
