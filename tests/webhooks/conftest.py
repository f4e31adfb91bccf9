"""Fixtures for the webhooks tests: a receiver over real HTTP, settings changed per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.webhooks.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver that answers 200 to everything."""
    started = Receiver().start()
    yield started
    started.stop()


@pytest.fixture
def configure(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """`configure(webhook_allow_private_targets="false", ...)`: change KINEMA_* settings for this test."""
    from app.config import get_settings

    def apply(**values: Any) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"KINEMA_{name.upper()}", str(value))
        get_settings.cache_clear()

    yield apply
    get_settings.cache_clear()


@pytest.fixture
def auth(make_key: Any) -> tuple[Any, dict[str, str]]:
    """A key row and the headers that authenticate as it."""
    row, key = make_key()
    return row, {"Authorization": f"Bearer {key}"}
