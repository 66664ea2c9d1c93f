"""A project whose dependencies live in its own ``.venv``: the real ``keel agent`` verifies
with that interpreter (pytest and the checker import the dependency Keel lacks), and says
clearly, naming the fix, when pytest is not installed there.

The ``.venv`` is built without network: ``python -m venv --without-pip``, a small module
written into its site-packages, and pytest made importable by a ``.pth`` line pointing at
the directory that holds Keel's own pytest.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest as pytest_module

from tests.integration.conftest import (
    bundle,
    git,
    json_events,
    node,
    plan,
    run_keel,
    write_transcript,
)

DEPENDENCY = "projdep_only_here"
APP = (
    f"from {DEPENDENCY} import double\n\n\ndef quad(x: int) -> int:\n    return double(double(x))\n"
)
TESTS = "from app import quad\n\n\ndef test_quad() -> None:\n    assert quad(2) == 8\n"


def make_project(root: Path, *, with_pytest: bool) -> Path:
    """A git repository (one commit) with a git-ignored ``.venv`` holding the dependency."""
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / ".gitignore").write_text(".venv/\n")
    (root / "README.md").write_text("# project\n")
    git(root, "add", ".gitignore", "README.md")
    git(root, "commit", "-qm", "initial commit")
    venv = root / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / f"{DEPENDENCY}.py").write_text("def double(x: int) -> int:\n    return 2 * x\n")
    if with_pytest:
        (site / "keel_pytest.pth").write_text(f"{Path(pytest_module.__file__).parent.parent}\n")
    return venv / "bin" / "python"


def entries() -> list[dict[str, Any]]:
    return [
        plan(
            node("node-1", ["app.py"], symbols=["quad"], title="Quad"),
            node("node-2", ["tests/test_app.py"], kind="unit_test", depends_on=["node-1"]),
        ),
        {"tier": "speculator", "node": None, "attempt": 1, "reply": {"hints": []}},
        bundle("node-1", writes={"app.py": APP}),
        bundle("node-2", writes={"tests/test_app.py": TESTS}),
    ]


def agent(tmp_path: Path, workspace: Path) -> list[dict[str, Any]]:
    transcript = write_transcript(tmp_path / "t.jsonl", entries())
    proc = run_keel(
        "agent", "-y", "--json", "--max-attempts", "1", "--model", f"replay:{transcript}",
        "-w", str(workspace), "Add quad using the project's dependency",
        env={"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "home" / "cfg")},
    )  # fmt: skip
    assert proc.stdout, proc.stderr
    return json_events(proc.stdout)


def test_keels_own_environment_lacks_the_dependency() -> None:
    assert importlib.util.find_spec(DEPENDENCY) is None


def test_verification_imports_the_projects_dependency_and_passes(tmp_path: Path) -> None:
    python = make_project(tmp_path / "ws", with_pytest=True)
    events = agent(tmp_path, tmp_path / "ws")

    started = next(e for e in events if e["type"] == "session_started")
    assert started["environment"]["python"] == {
        "interpreter": str(python),
        "source": ".venv",
        "version": ".".join(map(str, sys.version_info[:3])),
        "pytest": True,
    }
    checks = [e for e in events if e["type"] == "verification" and e["node"]]
    assert [(e["node"], e["stable"], e["v"]) for e in checks] == [
        ("node-1", True, 0.0),
        ("node-2", True, 0.0),
    ], checks
    finished = events[-1]
    assert finished["type"] == "session_finished" and finished["outcome"] == "success", finished
    assert not [e for e in events if e["type"] == "warning"]


def test_pytest_missing_from_the_projects_environment_is_said_with_its_fix(
    tmp_path: Path,
) -> None:
    python = make_project(tmp_path / "ws", with_pytest=False)
    events = agent(tmp_path, tmp_path / "ws")

    started = next(e for e in events if e["type"] == "session_started")
    assert started["environment"]["python"]["pytest"] is False
    fix = f"`{python} -m pip install pytest`"
    warnings = [e["message"] for e in events if e["type"] == "warning"]
    assert any(f"pytest is not installed for {python}" in w and fix in w for w in warnings)
    tests_check = next(e for e in events if e["type"] == "verification" and e["node"] == "node-2")
    assert not tests_check["stable"] and tests_check["degraded"] == ["python.tests"]
    [evidence] = [ev for ev in tests_check["evidence"] if ev["source"] == "python.tests"]
    assert fix in evidence["message"] and "V_log cannot be measured" in evidence["message"]
    # the checker still ran against the project's interpreter: node-1 imports the dependency
    node1 = next(e for e in events if e["type"] == "verification" and e["node"] == "node-1")
    assert node1["stable"], node1
    assert events[-1]["outcome"] == "partial"


def test_with_keels_interpreter_configured_the_dependency_does_not_resolve(
    tmp_path: Path,
) -> None:
    """The contrast: ``[python] interpreter`` pointing at Keel's own python wins over
    ``.venv``, and then the import of the project's dependency is an error."""
    make_project(tmp_path / "ws", with_pytest=True)
    (tmp_path / "ws" / "keel.toml").write_text(f'[python]\ninterpreter = "{sys.executable}"\n')
    events = agent(tmp_path, tmp_path / "ws")

    started = next(e for e in events if e["type"] == "session_started")
    assert started["environment"]["python"]["source"] == "[python] interpreter"
    node1 = next(e for e in events if e["type"] == "verification" and e["node"] == "node-1")
    assert not node1["stable"]
    assert any(DEPENDENCY in ev["message"] for ev in node1["evidence"]), node1["evidence"]
