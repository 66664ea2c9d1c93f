"""The words sent to each tier. Kept apart from the logic so a prompt change is one diff.

Every tier's system prompt ends with a description of its reply (:func:`reply_format`): the
fields of the reply schema with their meaning, generated from the pydantic models' field
descriptions in ``keel.engine.models`` (one source for the schema and its explanation), the
rules that validation enforces, and one short example. Small local models fill in only what
they are told about; large ones lose nothing by being told.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from collections.abc import Iterable, Mapping, Sequence

from pydantic import BaseModel

from keel.engine.bounds import cut_middle, fit_files, render_files
from keel.engine.guard import ABSENT, PromptFile
from keel.engine.models import NodeKind, Residual
from keel.engine.replies import (
    SCHEMA_NAMES,
    ArtifactBundle,
    Explanation,
    PlanNode,
    Speculation,
    TaskPlan,
    VerifierReport,
)


def _type_name(annotation: object) -> str:
    """A field's type in words: string, integer, list of strings, one of "a" | "b", ..."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is list:
        inner = _type_name(args[0]) if args else "value"
        return f"list of {inner}" if inner.startswith("one of") else f"list of {inner}s"
    if origin is typing.Literal:
        return "one of " + " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args if a is not type(None))
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return "object"
        if issubclass(annotation, enum.Enum):
            return "one of " + " | ".join(json.dumps(m.value) for m in annotation)
        if issubclass(annotation, bool):
            return "boolean"
        if issubclass(annotation, int):
            return "integer"
        if issubclass(annotation, str):
            return "string"
    return "value"


def _nested(annotation: object) -> type[BaseModel] | None:
    """The model a field holds (directly or as list items), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _nested(arg)
        if found is not None:
            return found
    return None


def field_lines(model: type[BaseModel], depth: int = 0) -> list[str]:
    """One line per field of ``model`` (and of the objects it holds, indented): name, type,
    whether it is required, and its description from the model."""
    pad = "  " * depth
    lines = []
    for name, info in model.model_fields.items():
        required = ", required" if info.is_required() else ""
        meaning = f": {info.description}" if info.description else ""
        lines.append(f"{pad}- {name} ({_type_name(info.annotation)}{required}){meaning}")
        inner = _nested(info.annotation)
        if inner is not None:
            lines += field_lines(inner, depth + 1)
    return lines


def reply_format(model: type[BaseModel], rules: Sequence[str], example: object) -> str:
    """The reply described for the model: its fields, the rules checked, one example."""
    name = SCHEMA_NAMES[model]
    lines = [
        f"Reply with one JSON object, the {name}, and nothing else (no prose, no Markdown).",
        f"The fields of {name}:",
        *field_lines(model),
    ]
    if rules:
        lines += [
            "Rules (a reply that breaks one is sent back to you):",
            *(f"- {r}" for r in rules),
        ]
    lines += ["Example:", json.dumps(example)]
    return "\n".join(lines)


PLAN_RULES = (
    "every code and unit_test node owns at least one file; no file is owned by two nodes: "
    "all the functions of one file belong to one node",
    "a small task is one node that owns the code and its test file, as in the example",
    "a unit_test node depends on the nodes it tests (depends_on), including the owner of "
    "every file in its context",
    "contract.symbols are names the node defines (functions, classes), not parameters",
    'commands must actually run the node\'s tests, e.g. "python -m pytest -q test_x.py"',
    "depends_on names only ids of this plan, without cycles",
)

PLAN_EXAMPLE = {
    "nodes": [
        {
            "id": "area",
            "title": "circle_area(radius) returns the area of a circle, with its tests",
            "kind": "code",
            "owns": ["geometry.py", "test_geometry.py"],
            "context": [],
            "depends_on": [],
            "commands": ["python -m pytest -q test_geometry.py"],
            "contract": {"symbols": ["circle_area", "test_circle_area"], "forbidden": ["TODO"]},
        }
    ]
}

BUNDLE_RULES = (
    "write only files the node owns; give each file's complete content in writes, or a "
    "unified diff of an existing file in diffs",
    "define every contract symbol at the top level of an owned file",
    "commands check this node only: run only test files that already exist or that this "
    "bundle writes; a node whose tests another node writes needs no commands",
)

BUNDLE_EXAMPLE = {
    "writes": [
        {
            "path": "geometry.py",
            "content": "def circle_area(radius):\n    return 3.14159 * radius * radius\n",
        },
        {
            "path": "test_geometry.py",
            "content": "from geometry import circle_area\n\n\ndef test_circle_area():\n"
            "    assert round(circle_area(2), 2) == 12.57\n",
        },
    ],
    "diffs": [],
    "deletes": [],
    "commands": ["python -m pytest -q test_geometry.py"],
}

VERIFIER_EXAMPLE = {
    "verdict": "unstable",
    "analysis": "circle_area() returns the circumference: the test expects pi * r**2.",
    "fix_hints": ["return math.pi * radius**2 in geometry.py"],
}

SPECULATION_EXAMPLE = {
    "hints": [{"node": "area-tests", "note": "import it with: from geometry import circle_area"}]
}

EXPLANATION_EXAMPLE = {
    "answer": "`circle_area` computes pi times the radius squared (geometry.py).",
    "citations": [{"path": "geometry.py", "line": 4}],
}

ARCHITECT_SYSTEM = """\
You are the architect of a verified coding agent. Decompose the task into a small DAG of
nodes. Each node owns the files it writes (every file owned by exactly one node), lists the
files it reads as context, and depends on the nodes whose files it needs. kind is "command"
(project set-up checked by commands), "code" or "unit_test"; a unit_test node depends on
the nodes it tests, including the owner of every file in its context. Paths are
workspace-relative with '/' separators. Put the symbols a node must define in
contract.symbols and patterns it must not contain (e.g. "TODO") in contract.forbidden.

""" + reply_format(TaskPlan, PLAN_RULES, PLAN_EXAMPLE)

ACTUATOR_SYSTEM = """\
You are the actuator of a verified coding agent. Produce the artifact_bundle for ONE node:
full-file "writes", unified-diff "diffs" (--- a/path, +++ b/path, @@ hunks) for small edits
to existing files, "deletes", and "commands" to run in the sandbox to check the result.
Write only files the node owns. Your bundle is verified by a type checker, the test runner
and the node's commands; if it is not stable you will get the evidence and another attempt.

""" + reply_format(ArtifactBundle, BUNDLE_RULES, BUNDLE_EXAMPLE)

VERIFIER_SYSTEM = """\
You are the verifier of a verified coding agent. Given a node, its bundle, the files as the
bundle left them and the evidence that it is not yet stable (diagnostics, failing tests,
failed commands, violated contract items), find the root cause in those files. Do not
write code. Answer with the verifier_report JSON object: verdict "unstable", a short
analysis, and concrete fix_hints.

""" + reply_format(VerifierReport, (), VERIFIER_EXAMPLE)

SPECULATOR_SYSTEM = """\
You are the speculator of a verified coding agent. Given a plan, look ahead: for nodes that
are likely to go wrong, note interface contracts, pitfalls and edge cases the actuator should
keep in mind. Answer with the speculation JSON object: {"hints": [{"node", "note"}]}.

""" + reply_format(Speculation, ("node is the id of a node of the plan",), SPECULATION_EXAMPLE)


def _workspace_lines(
    listing: Sequence[str],
    key_files: Sequence[PromptFile],
    languages: Sequence[str],
    repo_map: str | None,
) -> list[str]:
    """The workspace as the architect sees it: the ranked map (else the plain listing), the
    languages and the key files."""
    files = (
        [repo_map]
        if repo_map is not None
        else ["Workspace files:", *([f"  {path}" for path in listing] or ["  (empty workspace)"])]
    )
    return [
        f"Languages detected: {', '.join(languages) or 'none'}",
        "",
        *files,
        "",
        "Key files:",
        render_files(key_files),
    ]


def architect_prompt(
    task: str,
    listing: Sequence[str],
    key_files: Sequence[PromptFile],
    languages: Sequence[str],
    errors: Sequence[str],
    *,
    repo_map: str | None = None,
) -> str:
    """The architect's prompt; ``repo_map`` (the ranked map) replaces the plain listing."""
    lines = [f"Task: {task}", "", *_workspace_lines(listing, key_files, languages, repo_map)]
    if errors:
        lines += [
            "",
            "Your previous plan was invalid. Fix these problems:",
            *(f"- {error}" for error in errors),
        ]
    return "\n".join(lines)


def node_block(node: PlanNode) -> str:
    contract = node.contract
    return "\n".join(
        [
            f"Node {node.id}: {node.title} (kind: {node.kind.value})",
            f"Owns: {', '.join(node.owns) or '(nothing)'}",
            f"Depends on: {', '.join(node.depends_on) or '(nothing)'}",
            f"Planned commands: {', '.join(node.commands) or '(none)'}",
            f"Contract symbols: {', '.join(contract.symbols) or '(none)'}",
            f"Forbidden patterns: {', '.join(contract.forbidden) or '(none)'}",
        ]
    )


def evidence_lines(evidence: Iterable[Residual]) -> list[str]:
    return [f"- {residual.describe()}" for residual in evidence]


#: Said to the actuator of a code node: its tests are another node's, which runs them.
CODE_NODE_COMMANDS = (
    "This is a code node: its tests are written and run by the unit_test node that depends "
    "on it. Do not run test files that do not exist yet; leave commands empty unless a "
    "check of this node's own files can run now."
)


def _is_test_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.startswith("test_") or name.endswith("_test.py") or "/tests/" in f"/{path}"


#: Said to every actuator: the files it may write (a bundle writing others is refused whole).
OWNED_ONLY = (
    "Write only these files: {files}. A bundle that writes any other file is refused as a whole."
)
#: The same, where ``[engine] adopt_new_files`` lets a bundle create files no node owns.
OWNED_OR_NEW = (
    "Write only these files: {files}, or a new file that no node owns (it becomes yours). A "
    "bundle that writes another node's file or an existing file not yours is refused as a whole."
)
#: Said to every actuator whose owned files are not all there: each is its to write.
TO_CREATE = "Not written yet, and yours to create in this bundle with a full write: {files}."
#: Said to the actuator of a unit_test node: the code under test is another node's.
TEST_NODE_FILES = (
    "This is a unit_test node: the code it tests is already written (see the context files) "
    "and is not yours to change. Import what you test from its module (from geometry import "
    "circle_area); tests are plain functions named test_..., without self."
)

DEFINITIONS = "definitions the owned files use from other files (outlines)"


def actuator_prompt(
    task: str,
    node: PlanNode,
    owned: Sequence[PromptFile],
    context: Sequence[PromptFile],
    hints: Sequence[str],
    correction: str | None,
    *,
    definitions: str = "",
    room: int | None = None,
    reason: str = "",
    adopt: bool = False,
) -> str:
    """The actuator's prompt, within ``room`` characters when given (``adopt``: the node may
    also create files no node owns).

    Within the room, the node's own files come first, then its context files, then the
    outlines of the definitions it uses; what does not fit is shortened or left out, and the
    prompt says which and why (``reason``).
    """
    head = [f"Task: {task}", "", node_block(node)]
    owned_only = OWNED_OR_NEW if adopt else OWNED_ONLY
    head.append(owned_only.format(files=", ".join(node.owns) or "(nothing)"))
    absent = [f.path for f in owned if f.note == ABSENT]
    if absent:
        head.append(TO_CREATE.format(files=", ".join(absent)))
    if node.kind is NodeKind.CODE and not any(_is_test_file(path) for path in node.owns):
        head.append(CODE_NODE_COMMANDS)
    if node.kind is NodeKind.UNIT_TEST:
        head.append(TEST_NODE_FILES)
    tail: list[str] = []
    if hints:
        tail += ["", "Speculator hints:", *(f"- {hint}" for hint in hints)]
    if correction:
        tail += ["", correction]
    outlines = [PromptFile(DEFINITIONS, definitions, "", len(definitions))] if definitions else []
    groups: list[list[PromptFile]] = [list(owned), list(context), outlines]
    if room is None:
        return _actuator_text(head, groups, [], tail, reason)
    head[0] = cut_middle(head[0], room // 4, reason)
    tail = cut_middle("\n".join(tail), room // 4, reason).split("\n") if tail else []
    # Fit the files into what the rest leaves, then give back any overshoot (the sentence
    # naming the cuts is only known after fitting) until the whole prompt is within the room.
    files_room = room - len(_actuator_text(head, [[], [], []], [], tail, reason))
    prompt = ""
    for _ in range(8):  # each pass may lengthen the sentence of cuts: a few passes settle it
        fitted, cuts = fit_files(groups, files_room, reason)
        prompt = _actuator_text(head, fitted, cuts, tail, reason)
        if len(prompt) <= room:
            return prompt
        files_room -= len(prompt) - room
    return cut_middle(prompt, room, reason)


def _actuator_text(
    head: list[str],
    groups: Sequence[Sequence[PromptFile]],
    cuts: Sequence[str],
    tail: list[str],
    reason: str,
) -> str:
    lines = [*head]
    if cuts:
        lines += ["", f"Cut {reason}: " + "; ".join(cuts) + "."]
    lines += [
        "",
        "Files this node owns (current content):",
        render_files(groups[0]),
        "",
        "Context files (read only):",
        render_files(groups[1]),
    ]
    if groups[2]:
        lines += ["", "Definitions used from other files (read only):", render_files(groups[2])]
    return "\n".join([*lines, *tail])


def correction_block(
    attempt: int,
    evidence: Iterable[Residual],
    analysis: str | None,
    fix_hints: Sequence[str],
    feedback: str | None,
    bundle_summary: str,
    carried: Sequence[str] = (),
) -> str:
    """What the next attempt must fix: the evidence that made V(x) >= epsilon
    (docs/reference/protocol.md). ``carried``: the files the last attempt changed, shown as
    it left them; the next bundle is applied on top of them (docs/explanation/energy.md)."""
    lines = [
        f"Correction: attempt {attempt - 1} was not stable.",
        f"Its bundle: {bundle_summary}",
        "Evidence:",
        *evidence_lines(evidence),
    ]
    if analysis:
        lines += ["Verifier analysis:", analysis]
    if fix_hints:
        lines += ["Fix hints:", *(f"- {hint}" for hint in fix_hints)]
    if feedback:
        lines += ["User correction:", feedback]
    if carried:
        lines += [
            f"The files above are shown as attempt {attempt - 1} left them (not committed): "
            f"{', '.join(carried)}. Your bundle is applied on top of them: a file you leave "
            "out keeps the content shown. Write each file that must change, in full, with "
            "the fix; never delete a file to start over."
        ]
    else:
        lines.append("Produce a complete new bundle for this node that fixes all of the above.")
    return "\n".join(lines)


def verifier_prompt(
    task: str,
    node: PlanNode,
    bundle_summary: str,
    evidence: Iterable[Residual],
    energy: Mapping[str, float],
    files: Sequence[PromptFile] = (),
    *,
    room: int | None = None,
    reason: str = "",
) -> str:
    """The verifier's prompt: the evidence, and the files the attempt changed as it left
    them (without them an analysis can only guess at the code), within ``room`` characters:
    the files are cut first, saying so."""
    energy_text = ", ".join(f"{key}={value:.3f}" for key, value in energy.items())
    lines = [
        f"Task: {task}",
        "",
        node_block(node),
        "",
        f"Bundle: {bundle_summary}",
        f"Energy: {energy_text}",
        "Evidence:",
        *evidence_lines(evidence),
    ]
    if not files:
        return "\n".join(lines)
    shown: list[list[PromptFile]] = [list(files)]
    cuts: list[str] = []
    if room is not None:
        header = len("\n".join(lines)) + 200 + len(reason)
        shown, cuts = fit_files([list(files)], max(0, room - header), reason)
    tail = ["", "Files as the attempt left them:", render_files(shown[0])]
    if cuts:
        tail.append(f"Cut {reason}: " + "; ".join(cuts) + ".")
    return "\n".join([*lines, *tail])


def speculator_prompt(task: str, nodes: Sequence[PlanNode]) -> str:
    return "\n".join([f"Task: {task}", "", "Plan:", *(node_block(node) + "\n" for node in nodes)])


EXPLAIN_SYSTEM = """\
You explain code in a workspace; you change nothing. Answer the question from the files you
are shown, in Markdown, and cite the places your answer rests on as citations: {"path",
"line"}, a workspace-relative path and a 1-based line number of a file you were shown. Cite
only what you saw; say so when the files shown do not answer the question.
Answer with the explanation JSON object only: {"answer": str, "citations": [...]}.

""" + reply_format(Explanation, ("cite only files and lines you were shown",), EXPLANATION_EXAMPLE)


def numbered(text: str) -> str:
    """``text`` with 1-based line numbers, so a model can cite ``path:line``."""
    lines = text.splitlines()
    width = len(str(len(lines)))
    return "\n".join(f"{n:>{width}}| {line}" for n, line in enumerate(lines, start=1))


def explain_prompt(
    question: str,
    listing: Sequence[str],
    key_files: Sequence[PromptFile],
    relevant: Mapping[str, str | None],
    languages: Sequence[str],
    errors: Sequence[str],
    *,
    repo_map: str | None = None,
) -> str:
    """``keel explain``'s prompt; ``repo_map`` (the ranked map) replaces the plain listing."""
    shown = [
        PromptFile(path, numbered(text), "", len(text))
        for path, text in relevant.items()
        if text is not None
    ]
    lines = [
        f"Question: {question}",
        "",
        *_workspace_lines(listing, key_files, languages, repo_map),
        "",
        "Files the question names or that define its symbols (line-numbered):",
        render_files(shown),
    ]
    if errors:
        lines += ["", "Your previous reply was invalid:", *(f"- {error}" for error in errors)]
    return "\n".join(lines)


def explore_hint(turns: int, tokens: int) -> str:
    """Tells the architect it may look before it plans, and how much."""
    return (
        "Before you answer you may explore the workspace with read-only tools (search_code, "
        "open_file, find_symbol, list_folder), for up to "
        f"{turns} replies of tool calls and {tokens} tokens of results in all. Open the files "
        "the task is about before you decide which files each node owns; then answer with the "
        "task_plan."
    )


def explain_explore_hint(turns: int, tokens: int) -> str:
    """Tells the model answering ``keel explain`` it may look before it answers, and how much."""
    return (
        "Before you answer you may explore the workspace with read-only tools (search_code, "
        "open_file, find_symbol, list_folder), for up to "
        f"{turns} replies of tool calls and {tokens} tokens of results in all. Open the lines "
        "your answer rests on when the files shown do not hold them: open_file numbers its "
        "lines, and you may cite them. Then answer with the explanation."
    )
