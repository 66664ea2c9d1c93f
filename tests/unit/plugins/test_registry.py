"""Choosing plugins: the workspace's files first, then the task's words, then python."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.plugins.python import PythonPlugin
from keel.plugins.registry import detect_languages, detect_plugins, plugin_for
from keel.plugins.rust import RustPlugin

from .conftest import WriteTree


@pytest.mark.parametrize(
    ("files", "task", "languages"),
    [
        ({"Cargo.toml": ""}, "add a python script", ("rust",)),
        ({"pyproject.toml": ""}, "anything", ("python",)),
        ({"requirements.txt": ""}, "", ("python",)),
        ({"main.py": ""}, "", ("python",)),
        ({"Cargo.toml": "", "setup.py": ""}, "", ("python", "rust")),
        ({"README.md": ""}, "Write a Rust CLI with cargo", ("rust",)),
        ({}, "A Flask app with pytest tests", ("python",)),
        ({}, "Python bindings for a Rust crate", ("python", "rust")),
        ({}, "Create a calculator", ("python",)),
        ({}, "trust the process", ("python",)),  # "trust" is not "rust"
    ],
)
def test_detect_languages(
    write_tree: WriteTree, files: dict[str, str], task: str, languages: tuple[str, ...]
) -> None:
    assert detect_languages(write_tree(files), task).languages == languages


def test_the_fallback_says_so(tmp_path: Path) -> None:
    detection = detect_languages(tmp_path / "missing", "do something")
    assert detection.languages == ("python",)
    assert "assuming python" in detection.reason


def test_detect_plugins_builds_them_in_a_stable_order(write_tree: WriteTree) -> None:
    plugins = detect_plugins(write_tree({"Cargo.toml": "", "app.py": ""}), "")
    assert [type(p) for p in plugins] == [PythonPlugin, RustPlugin]
    assert [p.name for p in plugins] == ["python", "rust"]


def test_plugin_for_picks_the_owner() -> None:
    plugins = [PythonPlugin(), RustPlugin()]
    assert plugin_for("src/calc/core.py", plugins) is plugins[0]
    assert plugin_for("src/main.rs", plugins) is plugins[1]
    assert plugin_for("README.md", plugins) is None
