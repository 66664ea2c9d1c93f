"""The ``keel.toml`` examples of the docs are configuration Keel accepts: every ```toml block of
docs/reference/configuration.md and docs/how-to/use-a-local-model.md parses (one table per
name, as TOML requires) and validates against ``keel.config``'s schema."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from keel.config import validate

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = [DOCS / "reference" / "configuration.md", DOCS / "how-to" / "use-a-local-model.md"]
_BLOCK = re.compile(r"^```toml\n(.*?)^```", re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_toml_examples_are_valid_configuration(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEL_DASHBOARD_PASSWORD", "an example password")  # password_env's
    blocks = _BLOCK.findall(page.read_text(encoding="utf-8"))
    assert blocks, f"{page.name} has no toml example"
    for block in blocks:
        validate(tomllib.loads(block))  # raises, naming the key, on a bad example
