"""The command line at its edges: refused configuration, read-only commands that must not
create anything, ledger rollback mistakes, and a closed pipe."""

from __future__ import annotations

from pathlib import Path

from tests.integration.conftest import run_keel


def test_all_zero_energy_weights_are_refused_before_anything_runs(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    flag = run_keel("agent", "-w", str(workspace), "--energy-weights", "0,0,0,0,0", "a task")
    assert flag.returncode == 2, flag.stderr
    assert "must not all be zero" in flag.stderr
    env = run_keel("demo", "-w", str(workspace), env={"KEEL_ENERGY_WEIGHTS": "0,0,0,0,0"})
    assert env.returncode == 2, env.stderr
    assert "must not all be zero" in env.stderr.splitlines()[-1]
    one_off = run_keel(
        "agent",
        "-w",
        str(workspace),
        "--energy-weights",
        "1,0,2",
        "--model",
        "openai:x",
        "t",
        env={"OPENAI_API_KEY": ""},
    )
    assert "energy" not in one_off.stderr  # a single zero is allowed (it fails on the key)
