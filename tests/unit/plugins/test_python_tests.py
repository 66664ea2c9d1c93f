"""V_log for Python: real pytest runs in temporary trees, read back per test."""

from __future__ import annotations

import sys
from pathlib import Path

from keel.engine.models import Component
from keel.plugins.python import PythonPlugin
from keel.process import SubprocessRunner

from .conftest import WriteTree

MIXED = {
    "tests/test_mixed.py": """
        import pytest

        def add(a, b):
            return a + b

        def test_passes():
            assert add(1, 2) == 3

        def test_fails():
            assert add(1, 2) == 4, "one plus two"

        @pytest.fixture
        def broken():
            raise RuntimeError("fixture broke")

        def test_errors(broken):
            pass

        class TestGroup:
            @pytest.mark.parametrize("value", [1, 2])
            def test_param(self, value):
                assert value == 1
        """,
    "tests/test_broken_import.py": """
        import keel_no_such_module_xyz

        def test_never_runs():
            pass
        """,
}


async def test_each_failing_test_is_one_residual(write_tree: WriteTree) -> None:
    root = write_tree(MIXED)
    report = await PythonPlugin().run_tests(root, None)
    assert not report.degraded
    by_id = {r.test_id: r for r in report.residuals}
    assert set(by_id) == {
        "tests/test_mixed.py::test_fails",
        "tests/test_mixed.py::test_errors",
        "tests/test_mixed.py::TestGroup::test_param[2]",
        "tests/test_broken_import.py",
    }
    assert all(r.component is Component.LOG and r.source == "pytest" for r in report.residuals)

    failed = by_id["tests/test_mixed.py::test_fails"]
    assert failed.message.startswith("AssertionError: one plus two")
    assert "assert 3 == 4" in failed.message
    assert (failed.path, failed.line) == ("tests/test_mixed.py", 10)

    errored = by_id["tests/test_mixed.py::test_errors"]
    assert "fixture broke" in errored.message

    collection = by_id["tests/test_broken_import.py"]
    assert collection.message.startswith("collection error:")
    assert "No module named 'keel_no_such_module_xyz'" in collection.message
    assert (collection.path, collection.line) == ("tests/test_broken_import.py", 1)


async def test_the_report_is_written_outside_the_tree(write_tree: WriteTree) -> None:
    root = write_tree(MIXED)
    await PythonPlugin().run_tests(root, ["tests/test_mixed.py"])
    leftovers = {p.relative_to(root).as_posix() for p in root.rglob("*")}
    assert leftovers == {"tests", *MIXED}


async def test_a_passing_suite_has_no_residuals(write_tree: WriteTree) -> None:
    root = write_tree({"tests/test_ok.py": "def test_ok():\n    assert True\n"})
    report = await PythonPlugin().run_tests(root, ["tests/test_ok.py"])
    assert report.residuals == () and not report.degraded
    assert "1 test(s)" in report.detail


async def test_a_src_layout_package_imports_in_its_tests(write_tree: WriteTree) -> None:
    root = write_tree(
        {
            "src/calc/__init__.py": "from .core import add\n",
            "src/calc/core.py": "def add(a, b):\n    return a + b\n",
            "tests/test_calc.py": (
                "from calc import add\n\ndef test_add():\n    assert add(2, 2) == 4\n"
            ),
        }
    )
    report = await PythonPlugin().run_tests(root, None)
    assert report.residuals == (), report.residuals


async def test_no_tests_in_the_given_files_is_a_residual(write_tree: WriteTree) -> None:
    root = write_tree({"tests/test_empty.py": "X = 1\n"})
    report = await PythonPlugin().run_tests(root, ["tests/test_empty.py"])
    [residual] = report.residuals
    assert residual.component is Component.LOG
    assert residual.message == "no tests collected in tests/test_empty.py"


async def test_a_whole_suite_without_tests_is_a_residual(write_tree: WriteTree) -> None:
    root = write_tree({"calc.py": "X = 1\n"})
    report = await PythonPlugin().run_tests(root, None)
    [residual] = report.residuals
    assert "no tests collected" in residual.message


async def test_a_missing_test_file_is_a_residual(write_tree: WriteTree) -> None:
    root = write_tree({"calc.py": "X = 1\n"})
    report = await PythonPlugin().run_tests(root, ["tests/test_nope.py"])
    [residual] = report.residuals
    assert "file or directory not found: tests/test_nope.py" in residual.message


async def test_no_test_files_given_is_nothing_to_run(write_tree: WriteTree) -> None:
    root = write_tree({"calc.py": "X = 1\n"})
    report = await PythonPlugin().run_tests(root, ["calc.txt"])
    assert report.residuals == () and not report.degraded


async def test_an_interpreter_without_pytest_is_degraded(write_tree: WriteTree) -> None:
    """The tree's own ``.venv`` is used; a bare one has no pytest."""
    root = write_tree({"tests/test_ok.py": "def test_ok():\n    assert True\n"})
    made = await SubprocessRunner().run_argv(
        [sys.executable, "-m", "venv", "--without-pip", str(root / ".venv")], root, timeout_s=60
    )
    assert made.ok, made.output
    report = await PythonPlugin().run_tests(root, None)
    assert report.degraded
    [residual] = report.residuals
    assert residual.component is Component.BOOT
    assert "pytest is not installed" in residual.message
    assert str(Path(root / ".venv" / "bin" / "python")) in residual.message


async def test_a_hanging_suite_times_out_degraded(write_tree: WriteTree) -> None:
    root = write_tree(
        {"tests/test_hang.py": "import time\n\ndef test_hang():\n    time.sleep(30)\n"}
    )
    report = await PythonPlugin(test_timeout_s=2).run_tests(root, None)
    assert report.degraded
    assert "timed out" in report.residuals[0].message
