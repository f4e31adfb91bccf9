"""The job sweeper with several served models: a job's task is looked for, and sent, in its model's queue."""

# The sweeper tests' fixtures are imported by name, and pytest passes them as arguments of the same name.
# ruff: noqa: F811

from __future__ import annotations

from typing import Any

import pytest

from app.config import get_settings
from app.queue import enqueue_generation
from app.served_models import queue_for
from tests.worker.committed import add_job
from tests.worker.test_sweeper import _ago, _sweep, _tasks, key_id, queue, sweep_db  # noqa: F401

MOCHI = "tiny-mochi"


@pytest.fixture
def mochi_queue(queue: str, monkeypatch: pytest.MonkeyPatch, redis_client: Any) -> Any:
    monkeypatch.setenv("KINEMA_MODELS", f"{MOCHI}=/models/mochi")
    get_settings.cache_clear()
    name = queue_for(MOCHI, get_settings())
    assert name == f"{queue}.{MOCHI}"
    yield name
    redis_client.delete(name)


def test_a_lost_task_is_sent_again_to_its_models_queue(
    key_id: str,
    queue: str,
    mochi_queue: str,
    redis_client: Any,
) -> None:
    lost = add_job(key_id, model=MOCHI, updated_at=_ago(10))
    waiting = add_job(key_id, model=MOCHI, updated_at=_ago(10))
    enqueue_generation(waiting, MOCHI)
    # The waiting job's task is found in the Mochi queue (not the default one), so only the lost one is sent.
    assert _sweep(lost, waiting).resent == [lost]
    assert sorted(_tasks(redis_client, mochi_queue, lost, waiting)) == sorted([waiting, lost])
    assert _tasks(redis_client, queue, lost, waiting) == []
