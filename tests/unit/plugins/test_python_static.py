"""The Python plugin's in-process sensors (pyproject, imports) and its file and command rules."""

from __future__ import annotations

import pytest

from keel.engine.models import Component
from keel.plugins.python import PythonPlugin

from .conftest import WriteTree

GOOD_PYPROJECT = """
    [build-system]
    requires = ["setuptools>=68"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "calc"
    version = "0.1.0"
    """


# -- bootstrap (V_boot) ----------------------------------------------------------------------


async def test_a_good_pyproject_passes(write_tree: WriteTree) -> None:
    root = write_tree({"pyproject.toml": GOOD_PYPROJECT})
    report = await PythonPlugin().bootstrap(root)
    assert report.residuals == () and not report.degraded


async def test_a_dynamic_version_is_accepted(write_tree: WriteTree) -> None:
    text = GOOD_PYPROJECT.replace('version = "0.1.0"', 'dynamic = ["version"]')
    root = write_tree({"pyproject.toml": text})
    assert (await PythonPlugin().bootstrap(root)).residuals == ()


async def test_no_pyproject_is_nothing_to_check(write_tree: WriteTree) -> None:
    root = write_tree({"calc.py": "X = 1\n"})
    report = await PythonPlugin().bootstrap(root)
    assert report.residuals == () and not report.degraded


async def test_a_pyproject_without_metadata_gives_one_residual_per_problem(
    write_tree: WriteTree,
) -> None:
    root = write_tree({"pyproject.toml": '[project]\ndescription = "x"\n'})
    report = await PythonPlugin().bootstrap(root)
    messages = [r.message for r in report.residuals]
    assert messages == [
        "[project] has no name",
        "[project] has no version (and does not list it in dynamic)",
        "pyproject.toml has no [build-system] table",
    ]
    assert all(r.component is Component.BOOT and r.source == "pyproject" for r in report.residuals)


async def test_a_pyproject_that_does_not_parse_is_a_residual(write_tree: WriteTree) -> None:
    root = write_tree({"pyproject.toml": "[project\nname = 1\n"})
    [residual] = (await PythonPlugin().bootstrap(root)).residuals
    assert residual.message.startswith("pyproject.toml does not parse")


async def test_an_incomplete_build_system_is_named(write_tree: WriteTree) -> None:
    text = GOOD_PYPROJECT.replace('build-backend = "setuptools.build_meta"', "")
    root = write_tree({"pyproject.toml": text})
    [residual] = (await PythonPlugin().bootstrap(root)).residuals
    assert residual.message == "[build-system] has no build-backend"


# -- cross_check (V_sheaf) -------------------------------------------------------------------

CALC = {
    "calc/__init__.py": "from .core import add\n\n__all__ = ['add']\n",
    "calc/core.py": "def add(a, b):\n    return a + b\n",
}


async def test_a_missing_name_in_a_local_module_is_found(write_tree: WriteTree) -> None:
    root = write_tree({**CALC, "app.py": "import os\n\nfrom calc.core import add, mul\n"})
    report = await PythonPlugin().cross_check(root, ["app.py"])
    [residual] = report.residuals
    assert residual.component is Component.SHEAF
    assert residual.source == "imports"
    assert residual.message == "cannot import name 'mul' from 'calc.core'"
    assert (residual.path, residual.line) == ("app.py", 3)


async def test_good_absolute_and_relative_imports_pass(write_tree: WriteTree) -> None:
    root = write_tree(
        {
            **CALC,
            "calc/cli.py": "from . import core\nfrom .core import add\nfrom calc import add as a\n",
            "app.py": "import calc.core\nfrom calc import core, add\n",
        }
    )
    report = await PythonPlugin().cross_check(root, ["calc/cli.py", "app.py", "calc/__init__.py"])
    assert report.residuals == ()


async def test_a_bad_relative_import_is_found(write_tree: WriteTree) -> None:
    root = write_tree({**CALC, "calc/cli.py": "from .core import mul\nfrom .nope import x\n"})
    report = await PythonPlugin().cross_check(root, ["calc/cli.py"])
    assert [r.message for r in report.residuals] == [
        "cannot import name 'mul' from 'calc.core'",
        "No module named 'calc.nope'",
    ]


async def test_a_src_layout_resolves(write_tree: WriteTree) -> None:
    root = write_tree(
        {
            **{f"src/{path}": text for path, text in CALC.items()},
            "tests/test_calc.py": (
                "import pytest\nfrom calc import add\nfrom calc.core import sub\n"
            ),
        }
    )
    report = await PythonPlugin().cross_check(root, ["tests/test_calc.py"])
    assert [(r.message, r.line) for r in report.residuals] == [
        ("cannot import name 'sub' from 'calc.core'", 3)
    ]


async def test_third_party_optional_star_and_getattr_imports_are_accepted(
    write_tree: WriteTree,
) -> None:
    root = write_tree(
        {
            **CALC,
            "lazy.py": "def __getattr__(name):\n    return name\n",
            "star.py": "from os.path import *\n",
            "app.py": """
                import numpy
                from os import path
                from lazy import anything
                from star import join
                try:
                    from calc.fast import add
                except ImportError:
                    from calc.core import add
                """,
        }
    )
    report = await PythonPlugin().cross_check(root, ["app.py"])
    assert report.residuals == ()


async def test_a_syntax_error_is_a_residual(write_tree: WriteTree) -> None:
    root = write_tree({"broken.py": "def f(:\n    pass\n"})
    [residual] = (await PythonPlugin().cross_check(root, ["broken.py"])).residuals
    assert residual.message.startswith("syntax error")
    assert (residual.path, residual.line) == ("broken.py", 1)


async def test_a_relative_import_beyond_the_top_level_is_found(write_tree: WriteTree) -> None:
    root = write_tree({**CALC, "calc/cli.py": "from .. import core\n"})
    [residual] = (await PythonPlugin().cross_check(root, ["calc/cli.py"])).residuals
    assert "beyond top-level package" in residual.message


# -- files and commands ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "owned"),
    [
        ("src/calc/core.py", True),
        ("calc/core.pyi", True),
        ("pyproject.toml", True),
        ("setup.cfg", True),
        ("requirements-dev.txt", True),
        ("tests/conftest.py", True),
        ("README.md", False),
        ("Cargo.toml", False),
    ],
)
def test_owns_file(path: str, owned: bool) -> None:
    assert PythonPlugin().owns_file(path) is owned


@pytest.mark.parametrize(
    ("path", "is_test"),
    [
        ("tests/test_calc.py", True),
        ("test_calc.py", True),
        ("calc_test.py", True),
        ("tests/helpers.py", True),
        ("src/calc/core.py", False),
        ("src/calc/testing.py", False),
        ("tests/data.json", False),
    ],
)
def test_is_test_file(path: str, is_test: bool) -> None:
    assert PythonPlugin().is_test_file(path) is is_test


@pytest.mark.parametrize(
    "command",
    [
        "python -m pytest",
        "python3 -m pytest -q tests/test_calc.py",
        "python3.11 -m pytest -k 'add and not slow'",
        "pytest",
        "pytest -x tests",
        "python -m compileall -q src",
        "python -m py_compile src/calc/core.py",
        "python -m unittest discover",
        "ty check",
        "ty check src",
        "ruff check .",
    ],
)
def test_read_only_commands_are_allowed(command: str) -> None:
    assert PythonPlugin().command_allowed(command)


@pytest.mark.parametrize(
    "command",
    [
        "pytest; rm -rf /",
        "pytest && curl http://example.com",
        "pytest || true",
        "pytest | tee out",
        "pytest > out.txt",
        "pytest < in.txt",
        "pytest `whoami`",
        "pytest $(whoami)",
        "pytest &",
        "pytest\nrm -rf /",
        "python -m pip install -e .",
        "python setup.py install",
        "python -c 'import os'",
        "python -m http.server",
        "pip install requests",
        "rm -rf /",
        "ruff check --fix .",
        "ruff format .",
        "ty check --add-ignore",
        "pytest --basetemp=/home",
        "pytest --junitxml=/etc/x.xml",
        "pytest -p evil_plugin",
        "pytest -o cache_dir=/",
        "pytest --pastebin=all",
        "/usr/bin/python -m pytest",
        "OPENAI_API_KEY=x pytest",
        "pytest 'unterminated",
        "",
    ],
)
def test_other_commands_are_refused(command: str) -> None:
    assert not PythonPlugin().command_allowed(command)
