"""Pure conversions between the engine's records and LSP types.

Everything here is a function of its arguments (no server, no I/O), so the shapes the editor
sees are unit-tested directly: a bundle becomes a ``WorkspaceEdit``, an editor diagnostic a
V_syn residual, a residual a ``Diagnostic`` with ``source: "keel"``, an energy a Markdown
report. Text positions follow LSP's rules: ``\\n``, ``\\r\\n`` and ``\\r`` end lines, and
columns count in the negotiated position encoding.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from lsprotocol import types as T

from keel.bundles.hunks import Hunk
from keel.engine.models import Component, Energy, Residual
from keel.lsp import payloads
from keel.lsp.payloads import EditorDiagnostic

SOURCE = "keel"
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
_SEVERITY_MAGNITUDE = {T.DiagnosticSeverity.Error: 1.0, T.DiagnosticSeverity.Warning: 0.3}
_SEVERITY_NAME = {T.DiagnosticSeverity.Error: "error", T.DiagnosticSeverity.Warning: "warning"}
_NAMES = {c: f"V_{c.value}" for c in Component}


# -- paths and URIs --------------------------------------------------------------------------


def uri_to_fs(uri: str) -> Path | None:
    """The local path of a ``file:`` URI (``None`` for other schemes or malformed URIs)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        return None
    absolute = PurePosixPath(unquote(parts.path))
    if not absolute.is_absolute() or ".." in absolute.parts or "\0" in str(absolute):
        return None
    return Path(absolute)


def uri_to_path(uri: str, root: Path) -> str | None:
    """The workspace-relative ``a/b.py`` of a ``file:`` URI, or ``None`` when it is not one."""
    absolute = uri_to_fs(uri)
    if absolute is None:
        return None
    try:
        relative = absolute.relative_to(root)
    except ValueError:
        return None
    if not relative.parts or relative.parts[0] in (".git", ".keel"):
        return None
    return relative.as_posix()


def path_to_uri(root: Path, path: str) -> str:
    return (root / path).as_uri()


# -- text and edits --------------------------------------------------------------------------


def lines(text: str) -> list[str]:
    """``text`` split into lines with their endings, by LSP's line terminators only."""
    return _LINE.findall(text)


def units(text: str, encoding: str) -> int:
    """Length of ``text`` in the position encoding's code units."""
    if encoding == T.PositionEncodingKind.Utf8:
        return len(text.encode("utf-8"))
    if encoding == T.PositionEncodingKind.Utf32:
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def _position(old: list[str], index: int, encoding: str) -> T.Position:
    if index < len(old):
        return T.Position(line=index, character=0)
    if not old:
        return T.Position(line=0, character=0)
    last = old[-1]
    if last.endswith(("\n", "\r")):
        return T.Position(line=len(old), character=0)
    return T.Position(line=len(old) - 1, character=units(last, encoding))


def text_edits(old: str, new: str, encoding: str) -> list[T.TextEdit]:
    """Line-level edits that turn ``old`` into ``new`` (all relative to ``old``)."""
    a, b = lines(old), lines(new)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return [
        T.TextEdit(
            range=T.Range(start=_position(a, i1, encoding), end=_position(a, i2, encoding)),
            new_text="".join(b[j1:j2]),
        )
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
    ]


def changed_lines(old: str, new: str) -> list[int]:
    """The first line (0-based, in ``old``) of every changed region: where CodeLenses go."""
    a, b = lines(old), lines(new)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    starts = [
        min(i1, max(len(a) - 1, 0)) for tag, i1, _, _, _ in matcher.get_opcodes() if tag != "equal"
    ]
    return sorted(set(starts))


def hunk_lines(hunks: Sequence[Hunk], base: str, proposal: str, shown: str) -> list[int]:
    """Where each hunk is (0-based) in the text the editor ``shown``: its place in the
    proposal when the buffer shows the proposal, else its place in the base carried over to
    the buffer by a line diff (the base itself, or the base with the user's edits)."""
    if shown == proposal and shown != base:
        return [_clamp(h.new_start - 1 if h.new_lines else h.new_start, shown) for h in hunks]
    places = [h.old_start - 1 if h.old_lines else h.old_start for h in hunks]
    if shown == base:
        return [_clamp(place, shown) for place in places]
    a, b = lines(base), lines(shown)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    blocks = matcher.get_opcodes()

    def carried(place: int) -> int:
        for tag, i1, i2, j1, j2 in blocks:
            if i1 == i2 == place:  # the user's lines inserted before it
                return j2
            if i1 <= place < i2:
                return j1 + (place - i1 if tag == "equal" else 0)
        return len(b)

    return [_clamp(carried(place), shown) for place in places]


def _clamp(line: int, text: str) -> int:
    return max(0, min(line, max(len(lines(text)) - 1, 0)))


@dataclass(frozen=True)
class OpenText:
    """An editor buffer: its URI, version and current text."""

    uri: str
    version: int | None
    text: str


@dataclass(frozen=True)
class EditCaps:
    """What the client's ``workspace.workspaceEdit`` capability allows."""

    document_changes: bool = False
    resource_operations: frozenset[str] = frozenset()
    annotations: bool = False


@dataclass
class EditPlan:
    """A workspace edit and the new files it creates on disk (the ledger then fills them)."""

    edit: T.WorkspaceEdit | None
    created: list[str] = field(default_factory=list)


def bundle_edit(
    changes: Mapping[str, bytes | None],
    base: Mapping[str, bytes | None],
    buffers: Mapping[str, OpenText],
    root: Path,
    caps: EditCaps,
    *,
    label: str,
    description: str,
    encoding: str,
    file_operations: bool = True,
) -> EditPlan:
    """The edit that makes the editor show ``changes``.

    Open buffers get text edits (versioned, so an editor whose buffer moved on refuses);
    new and deleted files get ``CreateFile``/``DeleteFile`` where the client supports them.
    Files that are not open get no text edit: the ledger writes them to disk itself, so no
    editor ever holds an unsaved copy of them. Annotations (with ``needsConfirmation``) are
    attached only when the client supports them. Without ``file_operations`` only open
    buffers are updated (the files are already on disk).
    """
    annotation = "keel" if caps.annotations else None
    operations = caps.resource_operations if file_operations else frozenset()
    ops: list[T.TextDocumentEdit | T.CreateFile | T.DeleteFile] = []
    deletes: list[T.DeleteFile] = []
    plain: dict[str, list[T.TextEdit]] = {}
    plan = EditPlan(None)
    for path in sorted(changes):
        uri, new, buffer = path_to_uri(root, path), changes[path], buffers.get(path)
        if new is None:
            if caps.document_changes and "delete" in operations:
                options = T.DeleteFileOptions(ignore_if_not_exists=True)
                deletes.append(T.DeleteFile(uri=uri, options=options, annotation_id=annotation))
            continue
        if base.get(path) is None and caps.document_changes and "create" in operations:
            options_c = T.CreateFileOptions(overwrite=False, ignore_if_exists=True)
            ops.append(T.CreateFile(uri=uri, options=options_c, annotation_id=annotation))
            plan.created.append(path)
        if buffer is None:
            continue
        edits = text_edits(buffer.text, new.decode("utf-8", errors="replace"), encoding)
        if not edits:
            continue
        plain[uri] = edits
        annotated: list[T.TextEdit | T.AnnotatedTextEdit] = [
            T.AnnotatedTextEdit(annotation_id=annotation, range=e.range, new_text=e.new_text)
            if annotation
            else e
            for e in edits
        ]
        document = T.OptionalVersionedTextDocumentIdentifier(uri=uri, version=buffer.version)
        ops.append(T.TextDocumentEdit(text_document=document, edits=annotated))
    ops.extend(deletes)
    if caps.document_changes and ops:
        confirm = T.ChangeAnnotation(label, needs_confirmation=True, description=description)
        annotations = {annotation: confirm} if annotation else None
        plan.edit = T.WorkspaceEdit(document_changes=ops, change_annotations=annotations)
    elif not caps.document_changes and plain:
        plan.edit = T.WorkspaceEdit(changes=plain)
    return plan


# -- diagnostics -----------------------------------------------------------------------------


def editor_residuals(path: str, diagnostics: Sequence[EditorDiagnostic]) -> list[Residual]:
    """Errors (1.0) and warnings (0.3) as V_syn residuals, worded like the checker's.

    Keel's own diagnostics (``source: "keel"``) are never evidence about the code; an absent
    severity counts as an error, as clients show it.
    """
    out = []
    for diagnostic in diagnostics:
        if diagnostic.source == SOURCE:
            continue
        severity = T.DiagnosticSeverity(diagnostic.severity or 1)
        if severity not in _SEVERITY_MAGNITUDE:
            continue
        name = _SEVERITY_NAME[severity]
        head = (diagnostic.message.strip().splitlines() or [""])[0]
        text = f"{name}[{diagnostic.code}] {head}" if diagnostic.code else f"{name}: {head}"
        out.append(
            Residual(
                Component.SYN,
                text,
                diagnostic.source or "editor",
                _SEVERITY_MAGNITUDE[severity],
                path=path,
                line=diagnostic.line + 1,
            )
        )
    return out


def note(line: int, message: str, severity: T.DiagnosticSeverity) -> T.Diagnostic:
    """One of Keel's own findings: a diagnostic over a whole line, ``source: "keel"``."""
    where = T.Range(T.Position(line, 0), T.Position(line + 1, 0))
    return T.Diagnostic(range=where, message=message, severity=severity, source=SOURCE)


def finding(residual: Residual, severity: T.DiagnosticSeverity, prefix: str) -> T.Diagnostic:
    """A residual as a finding on its line (the first line when it has none)."""
    return note(max((residual.line or 1) - 1, 0), prefix + residual.describe(), severity)


def finding_severity(residual: Residual) -> T.DiagnosticSeverity:
    """Errors for full-weight residuals, warnings for lighter ones; information for one that
    was already there before the session (the baseline: it does not count)."""
    if residual.baseline is not None:
        return T.DiagnosticSeverity.Information
    return T.DiagnosticSeverity.Error if residual.magnitude >= 1 else T.DiagnosticSeverity.Warning


# -- energy ----------------------------------------------------------------------------------


def energy_payload(energy: Energy, epsilon: float) -> payloads.Energy:
    """The ``energy`` object of notifications and results: components, V, epsilon, stable."""
    return payloads.Energy(**energy.as_dict(), epsilon=epsilon, stable=energy.stable(epsilon))


def _quote(residual: Residual) -> str:
    return "`" + residual.describe().replace("`", "'").replace("\n", " ")[:300] + "`"


def energy_markdown(
    heading: str, status: str, energy: Energy, epsilon: float, attempts: int, *, limit: int = 8
) -> str:
    """The hover's energy report: components, V(x), epsilon, status, attempts, evidence."""
    stable = energy.stable(epsilon)
    rows = [f"| {_NAMES[c]} | {energy.components.get(c, 0.0):.3f} |" for c in Component]
    verdict = "stable" if stable else "unstable"
    reason = "V(x) < epsilon" if energy.total < epsilon else "V(x) >= epsilon"
    if energy.degraded_sensors:
        reason += "; degraded: " + ", ".join(energy.degraded_sensors)
    rows += [f"| **V(x)** | **{energy.total:.3f}** |", f"| epsilon | {epsilon:g} |"]
    parts = [
        f"**Keel** {heading}",
        f"status: **{verdict}** ({reason}) · {status} · attempts: {attempts}",
        "| component | energy |\n| --- | ---: |\n" + "\n".join(rows),
    ]
    evidence = []
    for component in Component:
        items = [r for r in energy.evidence if r.component is component and r.baseline is None]
        if not items or energy.components.get(component, 0.0) <= 0:
            continue
        evidence += [f"- {_NAMES[component]}: {_quote(r)}" for r in items[:limit]]
        if len(items) > limit:
            evidence.append(f"- {_NAMES[component]}: … {len(items) - limit} more")
    if evidence:
        parts.append("**Evidence**\n\n" + "\n".join(evidence))
    before = [r for r in energy.evidence if r.baseline is not None]
    if before:
        shown = [f"- {_NAMES[r.component]}: {_quote(r)}" for r in before[:limit]]
        if len(before) > limit:
            shown.append(f"- … {len(before) - limit} more")
        sha = str(before[0].baseline)[:12]
        head = f"**Already failing before the session** (at `{sha}`, not counted)"
        parts.append(head + "\n\n" + "\n".join(shown))
    return "\n\n".join(parts)


def evidence_text(energy: Energy, limit: int = 5) -> str:
    """The evidence of a refusal, one quoted item per line."""
    items = [
        r
        for r in energy.evidence
        if energy.components.get(r.component, 0.0) > 0 and r.baseline is None
    ]
    text = "; ".join(r.describe() for r in items[:limit])
    return text + (f"; … {len(items) - limit} more" if len(items) > limit else "")
