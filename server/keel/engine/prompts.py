"""The words sent to each tier. Kept apart from the logic so a prompt change is one diff."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from keel.engine.models import PlanNode, Residual

ARCHITECT_SYSTEM = """\
You are the architect of a verified coding agent. Decompose the task into a small DAG of
nodes. Each node owns the files it writes (every file owned by exactly one node), lists the
files it reads as context, and depends on the nodes whose files it needs. kind is "command"
(project set-up checked by commands), "code" or "unit_test"; a unit_test node depends on
the nodes it tests, including the owner of every file in its context. Paths are
workspace-relative with '/' separators. Put the symbols a node must define in
contract.symbols and patterns it must not contain (e.g. "TODO") in contract.forbidden.
Answer with the task_plan JSON object only."""

ACTUATOR_SYSTEM = """\
You are the actuator of a verified coding agent. Produce the artifact_bundle for ONE node:
full-file "writes", unified-diff "diffs" (--- a/path, +++ b/path, @@ hunks) for small edits
to existing files, "deletes", and "commands" to run in the sandbox to check the result.
Write only files the node owns. Your bundle is verified by a type checker, the test runner
and the node's commands; if it is not stable you will get the evidence and another attempt.
Answer with the artifact_bundle JSON object only."""

VERIFIER_SYSTEM = """\
You are the verifier of a verified coding agent. Given a node, its bundle and the evidence
that it is not yet stable (diagnostics, failing tests, failed commands, violated contract
items), find the root cause. Do not write code. Answer with the verifier_report JSON object:
verdict "unstable", a short analysis, and concrete fix_hints."""

SPECULATOR_SYSTEM = """\
You are the speculator of a verified coding agent. Given a plan, look ahead: for nodes that
are likely to go wrong, note interface contracts, pitfalls and edge cases the actuator should
keep in mind. Answer with the speculation JSON object: {"hints": [{"node", "note"}]}."""


def _files_block(files: Mapping[str, str | None]) -> str:
    if not files:
        return "(none)"
    parts = []
    for path, text in files.items():
        parts.append(f"--- {path} ---\n" + ("(does not exist yet)" if text is None else text))
    return "\n".join(parts)


def architect_prompt(
    task: str,
    listing: Sequence[str],
    key_files: Mapping[str, str | None],
    languages: Sequence[str],
    errors: Sequence[str],
    *,
    repo_map: str | None = None,
) -> str:
    """The architect's prompt; ``repo_map`` (the ranked map) replaces the plain listing."""
    files = (
        [repo_map]
        if repo_map is not None
        else ["Workspace files:", *([f"  {path}" for path in listing] or ["  (empty workspace)"])]
    )
    lines = [
        f"Task: {task}",
        "",
        f"Languages detected: {', '.join(languages) or 'none'}",
        "",
        *files,
        "",
        "Key files:",
        _files_block(key_files),
    ]
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


def actuator_prompt(
    task: str,
    node: PlanNode,
    owned: Mapping[str, str | None],
    context: Mapping[str, str | None],
    hints: Sequence[str],
    correction: str | None,
) -> str:
    lines = [
        f"Task: {task}",
        "",
        node_block(node),
        "",
        "Files this node owns (current content):",
        _files_block(owned),
        "",
        "Context files (read only):",
        _files_block(context),
    ]
    if hints:
        lines += ["", "Speculator hints:", *(f"- {hint}" for hint in hints)]
    if correction:
        lines += ["", correction]
    return "\n".join(lines)


def correction_block(
    attempt: int,
    evidence: Iterable[Residual],
    analysis: str | None,
    fix_hints: Sequence[str],
    feedback: str | None,
    bundle_summary: str,
) -> str:
    """What the next attempt must fix: the evidence that made V(x) >= epsilon (contract 5)."""
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
    lines.append("Produce a complete new bundle for this node that fixes all of the above.")
    return "\n".join(lines)


def verifier_prompt(
    task: str,
    node: PlanNode,
    bundle_summary: str,
    evidence: Iterable[Residual],
    energy: Mapping[str, float],
) -> str:
    energy_text = ", ".join(f"{key}={value:.3f}" for key, value in energy.items())
    return "\n".join(
        [
            f"Task: {task}",
            "",
            node_block(node),
            "",
            f"Bundle: {bundle_summary}",
            f"Energy: {energy_text}",
            "Evidence:",
            *evidence_lines(evidence),
        ]
    )


def speculator_prompt(task: str, nodes: Sequence[PlanNode]) -> str:
    return "\n".join([f"Task: {task}", "", "Plan:", *(node_block(node) + "\n" for node in nodes)])


def explore_hint(turns: int, tokens: int) -> str:
    """Tells the architect it may look before it plans, and how much."""
    return (
        "Before you answer you may explore the workspace with read-only tools (search_code, "
        "open_file, find_symbol, list_folder), for up to "
        f"{turns} replies of tool calls and {tokens} tokens of results in all. Open the files "
        "the task is about before you decide which files each node owns; then answer with the "
        "task_plan."
    )
