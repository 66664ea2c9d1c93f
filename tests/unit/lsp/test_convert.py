"""keel.lsp.convert: the pure shapes the editor sees (no server, no I/O)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from lsprotocol import types as T

from keel.engine.models import Component, Energy, Residual
from keel.lsp.args import EditorDiagnostic
from keel.lsp.convert import (
    EditCaps,
    OpenText,
    bundle_edit,
    changed_lines,
    editor_residuals,
    energy_markdown,
    energy_payload,
    evidence_text,
    finding,
    lines,
    text_edits,
    units,
    uri_to_path,
)

ROOT = Path("/work/ws")
VSCODE = EditCaps(True, frozenset({"create", "rename", "delete"}), annotations=True)
NEOVIM = EditCaps(True, frozenset({"create", "rename", "delete"}), annotations=False)


def apply(text: str, edits: list[T.TextEdit]) -> str:
    """Apply LSP text edits (utf-32 columns, all relative to ``text``) like an editor."""
    parts = lines(text)
    starts = [0]
    for part in parts:
        starts.append(starts[-1] + len(part))

    def offset(p: T.Position) -> int:
        return len(text) if p.line >= len(parts) else starts[p.line] + p.character

    for edit in sorted(edits, key=lambda e: offset(e.range.start), reverse=True):
        text = text[: offset(edit.range.start)] + edit.new_text + text[offset(edit.range.end) :]
    return text


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("file:///work/ws/src/calc.py", "src/calc.py"),
        ("file:///work/ws/with%20space.py", "with space.py"),
        ("file://localhost/work/ws/a.py", "a.py"),
        ("file:///work/other/a.py", None),
        ("file:///work/ws", None),
        ("file:///work/ws/.git/config", None),
        ("file:///work/ws/.keel/keel.db", None),
        ("file:///work/ws/../ws/a.py", None),
        ("untitled:Untitled-1", None),
        ("file://server/share/a.py", None),
        ("not a uri", None),
    ],
)
def test_uri_to_path(uri: str, path: str | None) -> None:
    assert uri_to_path(uri, ROOT) == path


def test_lines_and_units_follow_lsp() -> None:
    assert lines("a\r\nb\rc\nd\x0ce") == ["a\r\n", "b\r", "c\n", "d\x0ce"]
    assert lines("") == [] and lines("x\n") == ["x\n"]
    assert units("a😀b", T.PositionEncodingKind.Utf16) == 4
    assert units("a😀b", T.PositionEncodingKind.Utf8) == 6
    assert units("a😀b", T.PositionEncodingKind.Utf32) == 3


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("", "a\nb\n"),
        ("a\nb\n", ""),
        ("a\nb\nc\n", "a\nB\nc\n"),
        ("a\nb", "a\nb\nc"),
        ("a\nb", "a\nc"),
        ("x\r\ny\r\n", "x\r\nz\r\ny\r\n"),
        ("same\n", "same\n"),
        ("head\nmiddle\ntail", "head\ntail"),
    ],
)
def test_text_edits_turn_old_into_new(old: str, new: str) -> None:
    edits = text_edits(old, new, T.PositionEncodingKind.Utf32)
    assert apply(old, edits) == new
    assert (not edits) == (old == new)


def test_text_edits_random() -> None:
    rng = random.Random(7)
    vocabulary = ["a\n", "b\n", "c", "\n", "dd\r\n", "e"]
    for _ in range(300):
        old = "".join(rng.choice(vocabulary) for _ in range(rng.randint(0, 8)))
        new = "".join(rng.choice(vocabulary) for _ in range(rng.randint(0, 8)))
        assert apply(old, text_edits(old, new, T.PositionEncodingKind.Utf32)) == new


def test_end_of_a_last_line_without_newline_counts_in_the_encoding() -> None:
    (edit,) = text_edits("x = '😀'", "y = 1\n", T.PositionEncodingKind.Utf16)
    assert edit.range.end == T.Position(0, 8)


def test_changed_lines_mark_every_region() -> None:
    assert changed_lines("a\nb\nc\nd\n", "a\nB\nc\nD\n") == [1, 3]
    assert changed_lines("", "new\n") == [0]
    assert changed_lines("a\n", "a\n") == []


def test_bundle_edit_for_vscode() -> None:
    changes = {
        "new.py": b"N = 1\n",
        "open.py": b"A = 2\n",
        "closed.py": b"C = 2\n",
        "gone.py": None,
    }
    base = {"new.py": None, "open.py": b"A = 1\n", "closed.py": b"C = 1\n", "gone.py": b"G\n"}
    buffers = {"open.py": OpenText((ROOT / "open.py").as_uri(), 4, "A = 1\n")}
    plan = bundle_edit(
        changes, base, buffers, ROOT, VSCODE, label="Keel: T", description="d", encoding="utf-16"
    )
    assert plan.created == ["new.py"] and plan.edit is not None
    ops = plan.edit.document_changes or []
    kinds = [type(op).__name__ for op in ops]
    assert kinds == ["CreateFile", "TextDocumentEdit", "DeleteFile"]  # closed.py: ledger only
    create, text, delete = ops
    assert isinstance(create, T.CreateFile) and create.uri.endswith("/new.py")
    assert create.options and create.options.ignore_if_exists and not create.options.overwrite
    assert isinstance(text, T.TextDocumentEdit) and text.text_document.version == 4
    assert [e.new_text for e in text.edits] == ["A = 2\n"]
    assert all(isinstance(e, T.AnnotatedTextEdit) and e.annotation_id == "keel" for e in text.edits)
    assert isinstance(delete, T.DeleteFile) and delete.annotation_id == "keel"
    annotation = (plan.edit.change_annotations or {})["keel"]
    assert annotation.needs_confirmation and annotation.label == "Keel: T"


def test_bundle_edit_for_clients_without_annotations_or_file_operations() -> None:
    changes, base = {"new.py": b"N\n", "open.py": b"B\n"}, {"new.py": None, "open.py": b"A\n"}
    buffers = {"open.py": OpenText((ROOT / "open.py").as_uri(), 1, "A\n")}
    neovim = bundle_edit(
        changes, base, buffers, ROOT, NEOVIM, label="L", description="", encoding="utf-8"
    )
    assert neovim.edit is not None and neovim.edit.change_annotations is None
    assert all(
        getattr(op, "annotation_id", None) is None for op in neovim.edit.document_changes or []
    )
    for op in neovim.edit.document_changes or []:
        if isinstance(op, T.TextDocumentEdit):
            assert all(type(e) is T.TextEdit for e in op.edits)
    legacy = bundle_edit(
        changes, base, buffers, ROOT, EditCaps(), label="L", description="", encoding="utf-16"
    )
    assert legacy.created == [] and legacy.edit is not None
    assert legacy.edit.document_changes is None
    assert list((legacy.edit.changes or {}).keys()) == [(ROOT / "open.py").as_uri()]
    synced = bundle_edit(
        changes,
        base,
        buffers,
        ROOT,
        VSCODE,
        label="L",
        description="",
        encoding="utf-16",
        file_operations=False,
    )
    assert [type(op).__name__ for op in synced.edit.document_changes or []] == ["TextDocumentEdit"]


def test_bundle_edit_with_nothing_for_the_editor_is_none() -> None:
    plan = bundle_edit(
        {"a.py": b"x\n"},
        {"a.py": b"y\n"},
        {},
        ROOT,
        VSCODE,
        label="L",
        description="",
        encoding="utf-16",
    )
    assert plan.edit is None and plan.created == []


def test_editor_diagnostics_become_syn_residuals() -> None:
    diagnostics = [
        EditorDiagnostic(2, "undefined name\nmore", 1, "Pylance", "reportUndefined"),
        EditorDiagnostic(3, "unused import", 2, "Ruff"),
        EditorDiagnostic(4, "hint", 4, "Pylance"),
        EditorDiagnostic(5, "pending change", 3, "keel"),
        EditorDiagnostic(6, "keel's own error", 1, "keel"),
        EditorDiagnostic(7, "no severity"),
    ]
    residuals = editor_residuals("calc.py", diagnostics)
    assert [(r.component, r.magnitude, r.line, r.source) for r in residuals] == [
        (Component.SYN, 1.0, 3, "Pylance"),
        (Component.SYN, 0.3, 4, "Ruff"),
        (Component.SYN, 1.0, 8, "editor"),
    ]
    assert residuals[0].describe() == "[Pylance] calc.py:3: error[reportUndefined] undefined name"


def energy(**values: float) -> Energy:
    evidence = (
        Residual(Component.SYN, "error: bad `x`", "ty", path="a.py", line=3),
        Residual(Component.LOG, "assert 1 == 2", "pytest", test_id="tests/t.py::test_x"),
        Residual(Component.BOOT, "exit 1", "command", command="make", exit_code=1),
        Residual(Component.STR, "never shown: its component is zero", "contract"),
    )
    components = {c: values.get(c.value, 0.0) for c in Component}
    return Energy(components, evidence)


def test_energy_markdown_quotes_the_evidence_of_non_zero_components() -> None:
    report = energy_markdown(
        "`n1` Title", "awaiting approval", energy(syn=1, log=2, boot=1), 0.1, 2
    )
    for row in (
        "| V_syn | 1.000 |",
        "| V_str | 0.000 |",
        "| V_log | 2.000 |",
        "| V_boot | 1.000 |",
    ):
        assert row in report
    assert "| V_sheaf | 0.000 |" in report and "| **V(x)** | **4.000** |" in report
    assert "| epsilon | 0.1 |" in report and "attempts: 2" in report
    assert "status: **unstable** (V(x) >= epsilon)" in report
    assert "- V_syn: `[ty] a.py:3: error: bad 'x'`" in report
    assert "- V_log: `[pytest] tests/t.py::test_x: assert 1 == 2`" in report
    assert "- V_boot: `[command] `make` exited 1: exit 1`".replace("`make`", "'make'") in report
    assert "never shown" not in report
    calm = energy_markdown("h", "committed", energy(), 0.1, 1)
    assert "status: **stable** (V(x) < epsilon)" in calm and "Evidence" not in calm


def test_energy_payload_and_refusal_text() -> None:
    assert energy_payload(energy(syn=1), 0.1).wire() == {
        "v_syn": 1.0,
        "v_str": 0.0,
        "v_log": 0.0,
        "v_boot": 0.0,
        "v_sheaf": 0.0,
        "v": 1.0,
        "epsilon": 0.1,
        "stable": False,
    }
    assert evidence_text(energy(syn=1)) == "[ty] a.py:3: error: bad `x`"


def test_findings_are_keel_diagnostics_on_their_line() -> None:
    residual = Residual(Component.SHEAF, "cannot import name 'x'", "imports", path="a.py", line=4)
    diagnostic = finding(residual, T.DiagnosticSeverity.Error, "Keel sheaf check: ")
    assert diagnostic.source == "keel" and diagnostic.range.start.line == 3
    assert diagnostic.message == "Keel sheaf check: [imports] a.py:4: cannot import name 'x'"


def test_energy_markdown_shows_baseline_evidence_apart_and_uncounted() -> None:
    old = Residual(
        Component.LOG, "assert 1 == 3", "pytest", test_id="tests/t.py::test_old", baseline="f" * 40
    )
    new = Residual(Component.LOG, "assert 2 == 5", "pytest", test_id="tests/t.py::test_new")
    both = Energy({**{c: 0.0 for c in Component}, Component.LOG: 2.0}, (old, new))
    report = energy_markdown("h", "awaiting approval", both, 0.1, 1)
    evidence, _, before = report.partition("**Already failing before the session**")
    assert "test_new" in evidence and "test_old" not in evidence
    assert before.startswith(" (at `ffffffffffff`, not counted)")
    assert "tests/t.py::test_old: assert 1 == 3 (already failing at ffffffffffff)" in before
    assert "test_old" not in evidence_text(both) and "test_new" in evidence_text(both)
    only_old = Energy(dict.fromkeys(Component, 0.0), (old,))
    calm = energy_markdown("h", "committed", only_old, 0.1, 1)
    assert "status: **stable**" in calm and "**Evidence**" not in calm and "test_old" in calm


def test_a_finding_already_there_before_the_session_is_information() -> None:
    from keel.lsp.convert import finding_severity

    error = Residual(Component.SHEAF, "boom", "ty", path="a.py", line=1)
    assert finding_severity(error) is T.DiagnosticSeverity.Error
    assert finding_severity(Residual(Component.SHEAF, "w", "ty", 0.3)) is (
        T.DiagnosticSeverity.Warning
    )
    old = Residual(Component.SHEAF, "boom", "ty", path="a.py", line=1, baseline="abc")
    assert finding_severity(old) is T.DiagnosticSeverity.Information


def test_hunk_lines_follow_the_text_the_editor_shows() -> None:
    from keel.bundles.hunks import file_hunks
    from keel.lsp.convert import hunk_lines

    base = "a\nb\nc\nd\n"
    proposal = "A\nb\nc\nd\ne\nf\n"
    hunks = file_hunks("x", base.encode(), proposal.encode())
    assert [h.header for h in hunks] == ["@@ -1,1 +1,1 @@", "@@ -4,0 +5,2 @@"]
    assert hunk_lines(hunks, base, proposal, base) == [0, 3]  # the insertion: after line 4
    assert hunk_lines(hunks, base, proposal, proposal) == [0, 4]
    # the user added two lines at the top of the base: both hunks move down
    edited = "# one\n# two\n" + base
    assert hunk_lines(hunks, base, proposal, edited) == [2, 5]
    # a created file: its one hunk is at the top; an empty buffer still has line 0
    (created,) = file_hunks("y", None, b"x\n")
    assert hunk_lines([created], "", "x\n", "") == [0]
