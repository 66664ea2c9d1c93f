"""The fake model server fixture, loaded with the shared transcript entries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.model_server import FakeModelServer
from tests.unit.providers.helpers import ENTRIES


@pytest.fixture
def server() -> Iterator[FakeModelServer]:
    with FakeModelServer(ENTRIES) as srv:
        yield srv
