"""The project's environment: which interpreter is found, in which order, and what it can do.

Real virtual environments (``python -m venv --without-pip``, no network), real probes; a
fake ``pytest`` package is enough to tell "pytest importable" from "not".
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from keel.engine.ports import ConfigError
from keel.plugins.environment import (
    CONFIG_SOURCE,
    KEEL_SOURCE,
    detect_environment,
    find_python,
    poetry_env_name,
    probe_python,
    rust_environment,
)
from keel.plugins.python import PythonPlugin
from keel.plugins.registry import detect_plugins


def make_venv(path: Path) -> Path:
    """A real virtual environment without pip (no network); returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def fake_python(path: Path) -> Path:
    """A ``bin/python`` that exists (detection only looks at the file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_nothing_found_means_keels_own_interpreter(tmp_path: Path) -> None:
    assert find_python(tmp_path, {}) == (Path(sys.executable), KEEL_SOURCE, [])


def test_dot_venv_wins_over_venv_and_virtual_env(tmp_path: Path) -> None:
    dot = fake_python(tmp_path / ".venv" / "bin" / "python")
    fake_python(tmp_path / "venv" / "bin" / "python")
    active = fake_python(tmp_path / "elsewhere" / "bin" / "python").parent.parent
    assert find_python(tmp_path, {"VIRTUAL_ENV": str(active)})[:2] == (dot, ".venv")


def test_venv_then_virtual_env(tmp_path: Path) -> None:
    active = fake_python(tmp_path / "elsewhere" / "bin" / "python")
    env = {"VIRTUAL_ENV": str(active.parent.parent)}
    assert find_python(tmp_path, env)[:2] == (active, "VIRTUAL_ENV")
    plain = fake_python(tmp_path / "venv" / "bin" / "python")
    assert find_python(tmp_path, env)[:2] == (plain, "venv")


def test_a_broken_dot_venv_is_named_and_skipped(tmp_path: Path) -> None:
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(tmp_path / "gone" / "python3")
    path, source, notes = find_python(tmp_path, {})
    assert (path, source) == (Path(sys.executable), KEEL_SOURCE)
    assert len(notes) == 1 and ".venv" in notes[0] and "[python] interpreter" in notes[0]


def test_configured_interpreter_wins_relative_to_the_workspace(tmp_path: Path) -> None:
    fake_python(tmp_path / ".venv" / "bin" / "python")
    mine = fake_python(tmp_path / "envs" / "py" / "bin" / "python")
    assert find_python(tmp_path, {}, "envs/py/bin/python")[:2] == (mine, CONFIG_SOURCE)
    assert find_python(tmp_path, {}, "envs/py")[:2] == (mine, CONFIG_SOURCE)  # the directory


def test_a_configured_interpreter_that_does_not_exist_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[python\] interpreter = 'nope/python'.*does not"):
        find_python(tmp_path, {}, "nope/python")


def test_pdm_python_file(tmp_path: Path) -> None:
    python = fake_python(tmp_path / "pdm-env" / "bin" / "python")
    (tmp_path / ".pdm-python").write_text(f"{python}\n")
    assert find_python(tmp_path, {})[:2] == (python, "pdm")


def test_uv_project_environment(tmp_path: Path) -> None:
    python = fake_python(tmp_path / "uv-env" / "bin" / "python")
    assert find_python(tmp_path, {"UV_PROJECT_ENVIRONMENT": "uv-env"})[:2] == (python, "uv")


def test_poetry_environment_in_its_cache(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text('[tool.poetry]\nname = "My App"\n')
    (project / "poetry.lock").write_text("")
    name = poetry_env_name("My App", project)
    assert name.startswith("my_app-") and len(name) == len("my_app-") + 8
    python = fake_python(
        tmp_path / "cache" / "pypoetry" / "virtualenvs" / f"{name}-py3.11" / "bin" / "python"
    )
    other = tmp_path / "cache" / "pypoetry" / "virtualenvs" / "my_app-XXXXXXXX-py3.11"
    fake_python(other / "bin" / "python")  # another checkout's: not ours
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    assert find_python(project, env)[:2] == (python, "poetry")


def test_hatch_path_from_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.hatch.envs.default]\npath = ".hatch/x"\n'
    )
    python = fake_python(tmp_path / ".hatch" / "x" / "bin" / "python")
    assert find_python(tmp_path, {})[:2] == (python, "hatch")


async def test_probe_of_a_venv_without_pytest_says_so_and_names_the_fix(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "ws" / ".venv")
    env = await probe_python(tmp_path / "ws", python, ".venv")
    assert env.pytest is False
    assert env.version == ".".join(map(str, sys.version_info[:3]))
    assert env.prefix == tmp_path / "ws" / ".venv"
    [note] = env.notes
    assert f"pytest is not installed for {python}" in note
    assert f"`{python} -m pip install pytest`" in note and "[python] interpreter" in note
    # the venv itself (inside the workspace) and the base installation are read-only mounts
    assert tmp_path / "ws" / ".venv" in env.readonly_paths
    assert Path(sys.base_prefix).resolve() in env.readonly_paths


async def test_probe_finds_pytest_through_a_pth_and_mounts_its_directory(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "ws" / ".venv")
    tools = tmp_path / "tools"
    (tools / "pytest").mkdir(parents=True)
    (tools / "pytest" / "__init__.py").write_text("")
    (site_packages(tmp_path / "ws" / ".venv") / "tools.pth").write_text(f"{tools}\n")
    env = await probe_python(tmp_path / "ws", python, ".venv")
    assert env.pytest is True and env.notes == ()
    assert tools.resolve() in env.readonly_paths


async def test_an_interpreter_that_does_not_start_is_a_note_not_a_crash(tmp_path: Path) -> None:
    broken = tmp_path / ".venv" / "bin" / "python"
    broken.parent.mkdir(parents=True)
    broken.write_text("#!/bin/sh\necho 'libpython missing' >&2\nexit 3\n")
    broken.chmod(0o755)
    env = await probe_python(tmp_path, broken, ".venv")
    assert env.pytest is None
    [note] = env.notes
    assert "did not start (exit 3: libpython missing)" in note


async def test_detect_environment_and_the_plugin_use_the_workspace_venv(tmp_path: Path) -> None:
    python = make_venv(tmp_path / ".venv")
    (tmp_path / "pyproject.toml").write_text("")
    env = await detect_environment(tmp_path, ["python"], dict(os.environ))
    assert env.python is not None and env.python.interpreter == python
    assert env.rust is None
    assert env.record()["python"] == {
        "interpreter": str(python),
        "source": ".venv",
        "version": env.python.version,
        "pytest": False,
    }
    [plugin] = detect_plugins(tmp_path, "task", environment=env)
    assert isinstance(plugin, PythonPlugin) and plugin.python == str(python)
    # the sandbox (an export without the git-ignored .venv) still runs the project's python
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    assert plugin._interpreter(sandbox) == str(python)


def test_rust_reuses_cargo_home_and_one_target_dir_per_workspace(tmp_path: Path) -> None:
    env = rust_environment(tmp_path, {"HOME": str(tmp_path / "home")})
    assert env.cargo_home == tmp_path / "home" / ".cargo"
    assert env.target_dir == tmp_path / ".keel" / "cargo-target"
    assert env.readonly_paths == (tmp_path / "home" / ".cargo", tmp_path / "home" / ".rustup")
    custom = rust_environment(tmp_path, {"CARGO_HOME": "/opt/cargo", "HOME": "/h"})
    assert custom.env()["CARGO_HOME"] == "/opt/cargo"


async def test_rust_plugins_get_the_shared_target_dir_and_homes(tmp_path: Path) -> None:
    from keel.plugins.rust import RustPlugin

    (tmp_path / "Cargo.toml").write_text('[package]\nname = "x"\nversion = "0.1.0"\n')
    env = await detect_environment(tmp_path, ["rust"], {"HOME": str(tmp_path / "home")})
    assert env.python is None and env.writable_paths == (tmp_path / ".keel" / "cargo-target",)
    [plugin] = detect_plugins(tmp_path, "task", environment=env)
    assert isinstance(plugin, RustPlugin)
    assert plugin.target_dir == tmp_path / ".keel" / "cargo-target"
    cargo_env = plugin._env("/usr/bin/cargo")
    assert cargo_env["CARGO_HOME"] == str(tmp_path / "home" / ".cargo")
    assert cargo_env["CARGO_TARGET_DIR"] == str(tmp_path / ".keel" / "cargo-target")


def test_a_configured_bare_name_is_looked_up_on_path(tmp_path: Path) -> None:
    python = fake_python(tmp_path / "bin" / "python3.99")
    env = {"PATH": str(tmp_path / "bin")}
    assert find_python(tmp_path / "ws", env, "python3.99")[:2] == (python, CONFIG_SOURCE)
    with pytest.raises(ConfigError, match="does not exist"):
        find_python(tmp_path / "ws", env, "python3.98")


async def test_commands_find_the_projects_interpreter_first(tmp_path: Path) -> None:
    from keel.app import command_runner
    from keel.plugins.environment import ProjectEnvironment, PythonEnvironment

    python = make_venv(tmp_path / ".venv")
    env = await detect_environment(tmp_path, ["python"], dict(os.environ))
    assert env.python is not None and env.python.virtual
    child = command_runner({"PATH": "/usr/bin"}, env).environment()
    assert child["PATH"].split(os.pathsep)[0] == str(python.parent)
    assert child["VIRTUAL_ENV"] == str(tmp_path / ".venv")
    system = PythonEnvironment(Path("/usr/bin/python3"), CONFIG_SOURCE, prefix=Path("/usr"))
    plain = command_runner({"PATH": "/usr/bin"}, ProjectEnvironment(python=system)).environment()
    assert plain["PATH"].startswith("/usr/bin" + os.pathsep) and "VIRTUAL_ENV" not in plain
    keel = command_runner({"PATH": "/usr/bin"}).environment()
    assert keel["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
