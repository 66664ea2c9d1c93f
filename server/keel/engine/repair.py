"""Plan repair: the architect's plan, with the mistakes that have one obvious fix fixed.

Small models make the same few mistakes in a plan, and sending the plan back often only
brings the same mistake again (docs/explanation/plan-repair.md). :func:`repair_plan` fixes
those whose fix is unambiguous and keeps the model's intent, and says what it did, one
sentence per repair; the planner then validates the repaired plan, so anything still wrong
(or made wrong: a merge that closes a cycle) is sent back with the error naming the fix.

The repairs, in order:

0. a file the task names that does not exist and that no node owns replaces the one file of
   the plan that misspells it (the task's ``calculator.py`` owned as ``calculate.py``: same
   folder and extension, a close name, absent from the workspace and from the task);
1. nodes owning the same file are merged into the first of them (owns, context, commands,
   dependencies and contract joined);
2. a ``depends_on`` entry naming a file becomes the node owning it; a file nobody owns that
   exists, the node's own id and an unknown id are dropped, unless dropping leaves a
   unit_test node without anything it tests;
3. a contract symbol that is a test function (``test_...``, ``Test...``), or in a node that
   owns a test file an assertion helper (``assert_...``), leaves the contract (a test's name
   is no interface: the test runner finds any name);
4. a contract symbol the node's title shows as a parameter (``greet(name)``) is dropped;
5. a command naming a file another node's unit_test node writes merges that test node into
   the node running it (the file must exist when the command runs);
6. a command naming a file that does not exist and that no node owns: the node running it
   owns it (a file no node owns is adopted by the node that needs it);
7. a unit_test node that depends on no code or command node depends on the only one there is.

What a repair never does: give a node a file another node owns (merging makes one node of
both owners), or a file that exists in the workspace and no node owns.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from keel.bundles.paths import PathError, normalize
from keel.engine.guard import MAX_TITLE, check_plan_path
from keel.engine.models import NodeKind
from keel.engine.replies import NodeContract, PlanNode, TaskPlan

#: A test function or class as test runners collect them (pytest, unittest).
TEST_SYMBOL = re.compile(r"^(test_\w*|Test\w*)$")
#: An assertion helper's name (``assert_add``): in a node that owns tests, a test's, too.
ASSERTION_SYMBOL = re.compile(r"^assert_\w+$")
#: A command argument that reads as a file: a relative path with an extension.
FILE_ARGUMENT = re.compile(r"^[\w][\w./-]*\.[A-Za-z0-9]+$")
#: Options whose next argument is not a file (``python -m pkg.mod``, ``python -c code``).
NOT_A_FILE_NEXT = frozenset({"-m", "-c", "-k", "--deselect", "-p"})


@dataclass(frozen=True)
class Repaired:
    """The repaired plan and one sentence per repair (empty when nothing was repaired)."""

    plan: TaskPlan
    repairs: list[str] = field(default_factory=list)


def is_test_path(path: str) -> bool:
    """Whether ``path`` is a test file by the common conventions (``test_x.py``,
    ``x_test.py``, a file under ``tests/``)."""
    name = path.rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0]
    return name.startswith("test_") or stem.endswith("_test") or "/tests/" in f"/{path}"


def command_files(command: str) -> list[str]:
    """The workspace-relative files a command names (``python -m pytest -q test_x.py::t``
    names ``test_x.py``), normalised; what cannot be read as a file is left out."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    found: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        if word in NOT_A_FILE_NEXT:
            skip = True
            continue
        candidate = word.split("::", 1)[0]
        if candidate.startswith("-") or not FILE_ARGUMENT.match(candidate):
            continue
        try:
            path = normalize(candidate)
        except PathError:
            continue
        if path not in found:
            found.append(path)
    return found


def repair_plan(
    plan: TaskPlan, exists: Callable[[str], bool] | None = None, task: str = ""
) -> Repaired:
    """``plan`` with its unambiguous mistakes fixed (see the module's list).

    ``exists`` says whether a workspace path exists (it reads the file system: call this in
    a thread). Without it, nothing is adopted, renamed to the ``task``'s names, and no file
    dependency is dropped.
    """
    nodes = [node.model_copy(deep=True) for node in plan.nodes]
    repairs: list[str] = []
    if exists is not None and task:
        _task_file_names(nodes, task, exists, repairs)
    nodes = _merge_shared_files(nodes, repairs)
    _file_dependencies(nodes, exists, repairs)
    _test_symbols(nodes, repairs)
    _parameter_symbols(nodes, repairs)
    nodes = _merge_tests_run_elsewhere(nodes, repairs)
    if exists is not None:
        _adopt_command_files(nodes, exists, repairs)
    _test_node_dependency(nodes, repairs)
    return Repaired(plan.model_copy(update={"nodes": nodes}), repairs)


# -- 0. the file names the task gives --------------------------------------------------------

#: A file name in a task's text: a relative path whose extension is a known kind of file.
TASK_FILE = re.compile(
    r"(?<![\w./-])([\w][\w./-]*\.(?:py|pyi|rs|ts|tsx|js|jsx|mjs|cjs|go|java|kt|c|h|cc|cpp|hpp|"
    r"rb|php|cs|swift|lua|toml|json|yaml|yml|md|txt|cfg|ini|sh|html|css))(?![\w/-])"
)
#: How alike two file names must be (difflib's ratio) for one to be a misspelling of the other.
CLOSE_NAME = 0.75


def task_files(task: str) -> list[str]:
    """The workspace-relative files ``task`` names, normalised, in order, once each."""
    found: list[str] = []
    for match in TASK_FILE.finditer(task):
        try:
            path = normalize(match.group(1))
        except PathError:
            continue
        if path not in found:
            found.append(path)
    return found


def _task_file_names(
    nodes: list[PlanNode], task: str, exists: Callable[[str], bool], repairs: list[str]
) -> None:
    """The task's own name for a new file, where the plan owns a near miss of it instead."""
    named = task_files(task)
    for path in named:
        owned = [p for node in nodes for p in _owned_paths(node)]
        if path in owned or exists(path):
            continue
        misses = [
            (index, other)
            for index, node in enumerate(nodes)
            for other in _owned_paths(node)
            if other not in named and _near_miss(other, path) and not exists(other)
        ]
        if len(misses) != 1:
            continue  # none, or no telling which
        index, other = misses[0]
        nodes[:] = [_with_file_renamed(node, other, path) for node in nodes]
        repairs.append(
            f"{nodes[index].id} owned {other}, but the task names {path}: the plan uses the "
            "task's name"
        )


def _near_miss(owned: str, named: str) -> bool:
    """Whether ``owned`` reads as a misspelling of ``named``: the same folder, extension and
    kind (a test or not), and a close name."""
    folder, _, name = owned.rpartition("/")
    named_folder, _, named_name = named.rpartition("/")
    stem, dot, extension = name.rpartition(".")
    named_stem, named_dot, named_extension = named_name.rpartition(".")
    if (folder, dot, extension) != (named_folder, named_dot, named_extension):
        return False
    if is_test_path(owned) != is_test_path(named) or stem == named_stem:
        return False
    return difflib.SequenceMatcher(None, stem, named_stem).ratio() >= CLOSE_NAME


def _with_file_renamed(node: PlanNode, old: str, new: str) -> PlanNode:
    """``node`` with the file ``old`` called ``new`` in its owns, context, dependencies and
    commands (as a whole word: ``old.py`` in ``test_old.py`` stays)."""
    word = re.compile(rf"(?<![\w./-]){re.escape(old)}(?![\w/-])")

    def renamed(path: str) -> str:
        try:
            return new if normalize(path) == old else path
        except PathError:
            return path

    return node.model_copy(
        update={
            "owns": [renamed(p) for p in node.owns],
            "context": [renamed(p) for p in node.context],
            "depends_on": [renamed(d) for d in node.depends_on],
            "commands": [word.sub(new, c) for c in node.commands],
        }
    )


# -- 1. one owner per file ------------------------------------------------------------------


def _owned_paths(node: PlanNode) -> list[str]:
    paths = []
    for raw in node.owns:
        try:
            paths.append(normalize(raw))
        except PathError:
            continue
    return paths


def _merge_shared_files(nodes: list[PlanNode], repairs: list[str]) -> list[PlanNode]:
    """Nodes owning one file become one node, the first of them in plan order."""
    ids = [node.id for node in nodes]
    if len(set(ids)) != len(ids):
        return nodes  # duplicate ids: which node a reference means is ambiguous
    group = {node.id: node.id for node in nodes}

    def root(node_id: str) -> str:
        while group[node_id] != node_id:
            node_id = group[node_id]
        return node_id

    owner: dict[str, str] = {}
    order = {node_id: index for index, node_id in enumerate(ids)}
    shared: dict[str, set[str]] = {}
    for node in nodes:
        for path in _owned_paths(node):
            if path in owner and root(owner[path]) != root(node.id):
                first, second = sorted((root(owner[path]), root(node.id)), key=order.__getitem__)
                group[second] = first
                shared.setdefault(first, set()).add(path)
            owner.setdefault(path, node.id)
    members: dict[str, list[PlanNode]] = {}
    for node in nodes:
        members.setdefault(root(node.id), []).append(node)
    merged: list[PlanNode] = []
    for head, group_nodes in members.items():
        if len(group_nodes) == 1:
            merged.append(group_nodes[0])
            continue
        files = ", ".join(sorted(shared.get(head, ())))
        others = ", ".join(node.id for node in group_nodes[1:])
        repairs.append(
            f"{others} and {head} owned the same file ({files}): merged into {head}, which "
            "owns the files of both"
        )
        merged.append(_merge(group_nodes))
    return _renamed(merged, {node.id: root(node.id) for node in nodes})


def _merge(group: Sequence[PlanNode]) -> PlanNode:
    """One node doing the work of ``group`` (the first keeps its id)."""
    first = group[0]
    kinds = {node.kind for node in group}
    kind = next(k for k in (NodeKind.CODE, NodeKind.UNIT_TEST, NodeKind.COMMAND) if k in kinds)
    titles = _unique(node.title for node in group)
    title = "; ".join(titles)
    if len(title) > MAX_TITLE:
        title = first.title
    owns = _unique(path for node in group for path in _owned_paths(node))
    ids = {node.id for node in group}
    return first.model_copy(
        update={
            "title": title,
            "kind": kind,
            "owns": owns,
            "context": [
                path
                for path in _unique(path for node in group for path in node.context)
                if path not in owns
            ],
            "depends_on": [
                dep
                for dep in _unique(d for node in group for d in node.depends_on)
                if dep not in ids
            ],
            "commands": _unique(c for node in group for c in node.commands),
            "contract": NodeContract(
                symbols=_unique(s for node in group for s in node.contract.symbols),
                forbidden=_unique(f for node in group for f in node.contract.forbidden),
            ),
        }
    )


def _renamed(nodes: list[PlanNode], alias: Mapping[str, str]) -> list[PlanNode]:
    """Dependencies on merged nodes name the node they were merged into."""
    out = []
    for node in nodes:
        deps = _unique(alias.get(dep, dep) for dep in node.depends_on)
        out.append(node.model_copy(update={"depends_on": [d for d in deps if d != node.id]}))
    return out


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# -- 2. dependencies that name files, unknown nodes or the node itself ----------------------


def _file_dependencies(
    nodes: list[PlanNode], exists: Callable[[str], bool] | None, repairs: list[str]
) -> None:
    ids = {node.id for node in nodes}
    owners = {path: node.id for node in nodes for path in _owned_paths(node)}
    kinds = {node.id: node.kind for node in nodes}
    for index, node in enumerate(nodes):
        kept: list[str] = []
        dropped: list[str] = []
        for dep in node.depends_on:
            path = _as_path(dep)
            if dep in ids and dep != node.id:
                kept.append(dep)
            elif dep == node.id:
                dropped.append(dep)
                repairs.append(f"{node.id} depended on itself: that dependency was dropped")
            elif path is not None and path in owners:
                target = owners[path]
                if target != node.id:
                    kept.append(target)
                    repairs.append(
                        f"{node.id} depended on the file {dep}: now on its owner {target}"
                    )
                else:
                    repairs.append(f"{node.id} depended on {dep}, a file it owns: dropped")
            else:
                dropped.append(dep)
        unknown = [d for d in dropped if d != node.id]
        if unknown:
            tests_something = any(kinds[d] is not NodeKind.UNIT_TEST for d in kept)
            testable = [n.id for n in nodes if n.kind is not NodeKind.UNIT_TEST]
            if node.kind is NodeKind.UNIT_TEST and not tests_something:
                if len(testable) == 1 and all(_harmless(d, exists) for d in unknown):
                    kept.append(testable[0])
                    repairs.append(
                        f"{node.id} depended on {', '.join(unknown)}, not a node of the plan: "
                        f"it now depends on {testable[0]}, the only node it can test"
                    )
                else:  # dropping would hide what it tests: sent back instead
                    kept.extend(unknown)
            elif all(_harmless(d, exists) for d in unknown):
                what = ", ".join(unknown)
                repairs.append(f"{node.id} depended on {what}, not a node of the plan: dropped")
            else:
                kept.extend(unknown)
        nodes[index] = node.model_copy(update={"depends_on": _unique(kept)})


def _harmless(dep: str, exists: Callable[[str], bool] | None) -> bool:
    """Dropping ``dep`` loses nothing: it is no node, and, if it reads as a path, a file that
    already exists (nothing in the plan has to write it first)."""
    path = _as_path(dep)
    if path is None or not FILE_ARGUMENT.match(path):
        return True
    return exists is not None and exists(path)


def _as_path(raw: str) -> str | None:
    try:
        return normalize(raw)
    except PathError:
        return None


# -- 3 and 4. contract symbols that are tests or parameters ---------------------------------


def _test_symbols(nodes: list[PlanNode], repairs: list[str]) -> None:
    for index, node in enumerate(nodes):
        tests = any(is_test_path(p) for p in _owned_paths(node))
        moved = [
            s
            for s in node.contract.symbols
            if TEST_SYMBOL.match(s) or (tests and ASSERTION_SYMBOL.match(s))
        ]
        if not moved:
            continue
        kept = [s for s in node.contract.symbols if s not in moved]
        nodes[index] = _with_symbols(node, kept)
        if tests:
            repairs.append(
                f"{node.id} listed the test names {', '.join(moved)} in its contract: dropped "
                "(the tests are the node's own to name; no other node uses them)"
            )
        else:
            repairs.append(
                f"{node.id} listed the test {', '.join(moved)} in its contract but owns no "
                "test file: dropped from its contract (the tests' names are the test files' own)"
            )


def _parameter_symbols(nodes: list[PlanNode], repairs: list[str]) -> None:
    for index, node in enumerate(nodes):
        parameters = _parameters(node.title)
        dropped = [s for s in node.contract.symbols if s in parameters]
        if dropped:
            kept = [s for s in node.contract.symbols if s not in dropped]
            nodes[index] = _with_symbols(node, kept)
            names = ", ".join(f"{s} (of {parameters[s]}())" for s in dropped)
            repairs.append(f"{node.id} listed a parameter as a contract symbol: {names} dropped")


def _parameters(title: str) -> dict[str, str]:
    """The parameter names a title shows (``greet(name)`` shows ``name`` of ``greet``)."""
    found: dict[str, str] = {}
    for function, inside in re.findall(r"([A-Za-z_]\w*)\(([^()]*)\)", title):
        for part in inside.split(","):
            name = re.match(r"\s*\**([A-Za-z_]\w*)", part)
            if name and name.group(1) != function:
                found.setdefault(name.group(1), function)
    return found


def _with_symbols(node: PlanNode, symbols: list[str]) -> PlanNode:
    contract = node.contract.model_copy(update={"symbols": symbols})
    return node.model_copy(update={"contract": contract})


# -- 5 and 6. commands naming files ---------------------------------------------------------


def _merge_tests_run_elsewhere(nodes: list[PlanNode], repairs: list[str]) -> list[PlanNode]:
    """A node whose command runs a test file that a unit_test node writes, and that the file
    would not exist for (the test node is not among its dependencies), takes that test node
    in: the code and the test it runs become one node."""
    if len({node.id for node in nodes}) != len(nodes):
        return nodes
    while True:
        owners = {path: node for node in nodes for path in _owned_paths(node)}
        deps = {node.id: list(node.depends_on) for node in nodes}
        pair = None
        for node in nodes:
            for command in node.commands:
                for path in command_files(command):
                    other = owners.get(path)
                    if (
                        other is not None
                        and other.id != node.id
                        and other.kind is NodeKind.UNIT_TEST
                        and other.id not in ancestors(node.id, deps)
                    ):
                        pair = (node, other, path)
                        break
                if pair:
                    break
            if pair:
                break
        if pair is None:
            return nodes
        runner, tester, path = pair
        repairs.append(
            f"{runner.id} runs {path}, which {tester.id} writes after it: {tester.id} was "
            f"merged into {runner.id}, which now writes the code and its test"
        )
        merged = _merge([runner, tester])
        nodes = [merged if n.id == runner.id else n for n in nodes if n.id != tester.id]
        nodes = _renamed(nodes, {tester.id: runner.id})


def _adopt_command_files(
    nodes: list[PlanNode], exists: Callable[[str], bool], repairs: list[str]
) -> None:
    """A command naming a file that does not exist and that no node owns (or owns a folder
    of): the node running the command owns it, so its actuator may write it."""
    for index, node in enumerate(nodes):
        owned = [path for other in nodes for path in _owned_paths(other)]
        adopted: list[str] = []
        for command in node.commands:
            for path in command_files(command):
                if path in adopted or _covered(path, owned) or exists(path):
                    continue
                try:
                    check_plan_path(path)
                except PathError:
                    continue
                adopted.append(path)
        if adopted:
            names = ", ".join(adopted)
            repairs.append(
                f"{node.id} runs {names}, which does not exist and no node owns: "
                f"{node.id} now owns it and writes it"
            )
            nodes[index] = node.model_copy(update={"owns": [*node.owns, *adopted]})


def owner_of(path: str, nodes: Iterable[PlanNode]) -> str | None:
    """The id of the node owning ``path`` (or a folder it is in), or None."""
    for node in nodes:
        if _covered(path, _owned_paths(node)):
            return node.id
    return None


def _covered(path: str, owned: Sequence[str]) -> bool:
    """Whether a node owns ``path`` or a folder it is in."""
    return any(path == o or path.startswith(o + "/") for o in owned)


# -- 7. a test node depends on what it tests ------------------------------------------------


def _test_node_dependency(nodes: list[PlanNode], repairs: list[str]) -> None:
    code = [node for node in nodes if node.kind is not NodeKind.UNIT_TEST]
    if len(code) != 1:
        return
    [only] = code
    deps = {node.id: list(node.depends_on) for node in nodes}
    for index, node in enumerate(nodes):
        if node.kind is not NodeKind.UNIT_TEST or only.id in ancestors(node.id, deps):
            continue
        if node.id in ancestors(only.id, deps):
            continue  # the code waits for the test: adding the edge would close a cycle
        nodes[index] = node.model_copy(update={"depends_on": [*node.depends_on, only.id]})
        deps[node.id].append(only.id)
        repairs.append(
            f"unit_test node {node.id} depended on no node it tests: it now depends on "
            f"{only.id}, the plan's only {only.kind.value} node"
        )


def ancestors(node_id: str, deps: Mapping[str, set[str] | Sequence[str]]) -> set[str]:
    """Every node ``node_id`` depends on, directly or through others."""
    found: set[str] = set()
    stack = list(deps.get(node_id, ()))
    while stack:
        current = stack.pop()
        if current not in found:
            found.add(current)
            stack.extend(deps.get(current, ()))
    return found
