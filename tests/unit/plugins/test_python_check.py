"""V_syn for Python with the real checkers: ty over LSP, its CLI, and no checker at all."""

from __future__ import annotations

import functools
import stat
import time
from pathlib import Path

import pytest
from lsprotocol import types

from keel.engine.models import Component
from keel.engine.ports import LanguagePlugin
from keel.plugins.base import find_tool
from keel.plugins.lsp_checker import to_residuals
from keel.plugins.python import PythonPlugin

from .conftest import WriteTree, is_gone

TY = find_tool("ty")
pytestmark = pytest.mark.skipif(TY is None, reason="ty is not installed beside Keel")

BAD = {"bad.py": 'x: int = "a"\n', "good.py": "def f(a: int) -> int:\n    return a + 1\n"}


def test_the_plugin_implements_the_port() -> None:
    plugin: LanguagePlugin = PythonPlugin()
    assert plugin.name == "python"


async def test_ty_over_lsp_finds_a_type_error_with_file_and_line(write_tree: WriteTree) -> None:
    root = write_tree(BAD)
    report = await PythonPlugin().check(root, ["bad.py", "good.py"])
    assert "ty server (LSP)" in report.detail
    assert not report.degraded
    [residual] = report.residuals
    assert residual.component is Component.SYN
    assert residual.source == "ty"
    assert residual.magnitude == 1.0
    assert (residual.path, residual.line) == ("bad.py", 1)
    assert "invalid-assignment" in residual.message


async def test_ty_over_lsp_says_a_clean_file_is_clean(write_tree: WriteTree) -> None:
    root = write_tree(BAD)
    report = await PythonPlugin().check(root, ["good.py"])
    assert "ty server (LSP)" in report.detail
    assert report.residuals == () and not report.degraded


async def test_the_cli_route_parses_the_same_error(write_tree: WriteTree) -> None:
    root = write_tree(BAD)
    report = await PythonPlugin(prefer_lsp=False).check(root, ["bad.py", "good.py"])
    assert report.detail.startswith("ty check (CLI)")
    [residual] = report.residuals
    assert (residual.path, residual.line, residual.source) == ("bad.py", 1, "ty")
    assert residual.message.startswith("error[invalid-assignment]")


async def test_a_broken_language_server_falls_back_to_the_cli(
    write_tree: WriteTree, tmp_path: Path
) -> None:
    """A ``ty`` whose server dies at once but whose ``check`` is the real one."""
    root = write_tree(BAD)
    fake = tmp_path / "bin" / "ty"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nif [ "$1" = server ]; then exit 3; fi\nexec {TY} "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    plugin = PythonPlugin(tool_finder=lambda name: str(fake) if name == "ty" else None)
    report = await plugin.check(root, ["bad.py"])
    assert "ty check (CLI)" in report.detail and "LSP route failed" in report.detail
    assert [(r.path, r.line) for r in report.residuals] == [("bad.py", 1)]


async def test_third_party_imports_and_a_src_layout_resolve(write_tree: WriteTree) -> None:
    root = write_tree(
        {
            "src/calc/__init__.py": "def add(a: int, b: int) -> int:\n    return a + b\n",
            "tests/test_calc.py": """
                import pytest
                from calc import add

                def test_add() -> None:
                    assert add(1, 2) == pytest.approx(3)
                """,
        }
    )
    for plugin in (PythonPlugin(), PythonPlugin(prefer_lsp=False)):
        report = await plugin.check(root, ["tests/test_calc.py", "src/calc/__init__.py"])
        assert report.residuals == (), report.residuals


async def test_a_missing_checker_is_degraded_not_a_pass(write_tree: WriteTree) -> None:
    root = write_tree(BAD)
    nowhere = functools.partial(find_tool, path="", prefer_dirs=())
    report = await PythonPlugin(tool_finder=nowhere).check(root, ["bad.py"])
    assert report.degraded
    [residual] = report.residuals
    assert residual.component is Component.BOOT
    assert "not found" in residual.message and "V_syn cannot be measured" in residual.message


async def test_an_unknown_checker_name_is_degraded(write_tree: WriteTree) -> None:
    root = write_tree(BAD)
    report = await PythonPlugin(checkers=("keel-no-such-checker",)).check(root, ["bad.py"])
    assert report.degraded
    assert report.residuals[0].message.startswith("keel-no-such-checker not found")


async def test_non_python_files_are_not_checked(write_tree: WriteTree) -> None:
    root = write_tree({"README.md": "# hi\n"})
    report = await PythonPlugin().check(root, ["README.md", "missing.py"])
    assert report.residuals == () and not report.degraded


@pytest.mark.skipif(find_tool("basedpyright-langserver") is None, reason="no basedpyright")
async def test_basedpyright_is_driven_over_lsp_too(write_tree: WriteTree) -> None:
    root = write_tree(BAD)
    report = await PythonPlugin(checkers=("basedpyright",)).check(root, ["bad.py", "good.py"])
    assert "basedpyright-langserver (LSP)" in report.detail
    [residual] = report.residuals
    assert (residual.path, residual.line, residual.source) == ("bad.py", 1, "basedpyright")


async def test_checking_leaves_the_tree_untouched(write_tree: WriteTree) -> None:
    root = write_tree(BAD)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    await PythonPlugin().check(root, ["bad.py", "good.py"])
    await PythonPlugin(prefer_lsp=False).check(root, ["bad.py", "good.py"])
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_severities_weigh_errors_and_warnings_only() -> None:
    def diagnostic(severity: types.DiagnosticSeverity | None) -> types.Diagnostic:
        position = types.Position(line=4, character=0)
        return types.Diagnostic(
            range=types.Range(start=position, end=position),
            message="first line\nmore detail",
            severity=severity,
            code="some-rule",
        )

    severities = [
        types.DiagnosticSeverity.Error,
        types.DiagnosticSeverity.Warning,
        types.DiagnosticSeverity.Information,
        types.DiagnosticSeverity.Hint,
        None,
    ]
    residuals = to_residuals("ty", "a.py", [diagnostic(s) for s in severities])
    assert [(r.magnitude, r.message) for r in residuals] == [
        (1.0, "error[some-rule] first line"),
        (0.3, "warning[some-rule] first line"),
        (1.0, "error[some-rule] first line"),  # no severity: taken as an error
    ]
    assert {(r.path, r.line, r.component) for r in residuals} == {("a.py", 5, Component.SYN)}


async def test_a_hung_language_server_times_out_to_the_cli(
    write_tree: WriteTree, tmp_path: Path
) -> None:
    root = write_tree(BAD)
    fake = tmp_path / "bin" / "ty"
    fake.parent.mkdir()
    pid_file = tmp_path / "server.pid"
    fake.write_text(
        f'#!/bin/sh\nif [ "$1" = server ]; then echo $$ > {pid_file}; exec sleep 60; fi\n'
        f'exec {TY} "$@"\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    plugin = PythonPlugin(tool_finder=lambda name: str(fake), lsp_timeout_s=1)
    started = time.monotonic()
    report = await plugin.check(root, ["bad.py"])
    assert time.monotonic() - started < 8
    assert "timed out" in report.detail and "ty check (CLI)" in report.detail
    assert [(r.path, r.line) for r in report.residuals] == [("bad.py", 1)]
    assert is_gone(int(pid_file.read_text())), "the hung server was left running"
