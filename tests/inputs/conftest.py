"""Settings for input tests: an explicit Settings object (no environment), with limits a test may lower."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from tests.inputs.server import Served, serving


@pytest.fixture
def input_settings(tmp_path: Path) -> Any:
    """Factory: `input_settings(**overrides) -> Settings` with the input limits' defaults."""

    def make(**overrides: Any) -> Settings:
        return Settings(home=tmp_path / "home", **overrides)

    return make


@pytest.fixture
def server() -> Iterator[Served]:
    with serving() as served:
        yield served
