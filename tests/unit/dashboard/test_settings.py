"""``[dashboard]`` in keel.toml, and how a session's status and spending are read."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.config import load_config
from keel.dashboard.queries import finished_totals, status_of
from keel.engine.ports import ConfigError


def _config(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> object:
    (tmp_path / "keel.toml").write_text(text)
    return load_config(tmp_path, env={"HOME": str(tmp_path / "home"), **(env or {})})


def test_the_dashboard_section_is_accepted_with_its_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path, env={"HOME": str(tmp_path)}).dashboard
    assert (config.host, config.port, config.password, config.password_env) == (
        "127.0.0.1",
        3000,
        None,
        None,
    )
    text = '[dashboard]\nhost = "0.0.0.0"\nport = 8080\npassword_env = "DASH_PW"\n'
    chosen = _config(tmp_path, text).dashboard  # type: ignore[attr-defined]
    assert (chosen.host, chosen.port) == ("0.0.0.0", 8080)
    assert chosen.resolve_password({"DASH_PW": "from the environment"}) == "from the environment"


def test_a_password_variable_that_is_not_set_is_an_error_not_an_open_dashboard(
    tmp_path: Path,
) -> None:
    text = '[dashboard]\npassword_env = "DASH_PW"\npassword = "in-the-file"\n'
    chosen = _config(tmp_path, text).dashboard  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="DASH_PW, which is not set"):
        chosen.resolve_password({})
    with pytest.raises(ConfigError, match="DASH_PW"):
        chosen.resolve_password({"DASH_PW": ""})
    assert (
        _config(tmp_path, '[dashboard]\npassword = "pw"\n').dashboard.resolve_password({}) == "pw"
    )  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "text",
    [
        "[dashboard]\nport = 70000\n",
        "[dashboard]\nport = -1\n",
        '[dashboard]\npassword = ""\n',
        "[dashboard]\ntoken = 1\n",
    ],
)
def test_bad_dashboard_values_are_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="dashboard"):
        _config(tmp_path, text)


def test_status_running_wins_over_an_earlier_outcome() -> None:
    finished = {"finished_at": "2026-12-04T00:00:00+00:00", "outcome": "partial"}
    assert status_of(finished, running=False) == "partial"
    assert status_of(finished, running=True) == "running"  # resumed and running again
    assert status_of({"finished_at": None}, running=False) == "stopped"
    assert status_of({"finished_at": "x", "outcome": "weird"}, running=False) == "stopped"


def test_recorded_totals_are_used_only_when_complete() -> None:
    totals = {"calls": 3, "cost_usd": 0.5, "input_tokens": 10, "output_tokens": 2}
    done = {"finished_at": "x", "totals": {**totals, "reason": ""}}
    assert finished_totals(done) == totals
    assert finished_totals({**done, "finished_at": None}) is None
    assert finished_totals({**done, "totals": {"calls": 3}}) is None
    assert finished_totals({**done, "totals": {**totals, "cost_usd": "lots"}}) is None
