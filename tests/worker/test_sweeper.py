"""The job sweeper against real Postgres and Redis: which jobs it re-sends, re-queues or fails, and which
it leaves alone. The broker's content is made with kombu itself (a send; a delivery not acknowledged)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.api_keys import service as keys
from app.db import session_scope, utcnow
from app.jobs import runs
from tests.conftest import clear_caches, new_database
from tests.worker.committed import add_job, job_row


@pytest.fixture(scope="module")
def sweep_db() -> Iterator[str]:
    """A database of the module's own: a sweep looks at every job, other tests' included."""
    with new_database("kinema_sweep") as url:
        yield url


@pytest.fixture
def queue(
    settings_env: dict[str, str], sweep_db: str, monkeypatch: pytest.MonkeyPatch, redis_client: Any
) -> Iterator[str]:
    """A generation queue of the test's own; the sweeper re-sends after 2 s; leases last 5 s."""
    name = f"kinema.sweep.{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("KINEMA_DATABASE_URL", sweep_db)
    monkeypatch.setenv("KINEMA_QUEUE_NAME", name)
    monkeypatch.setenv("KINEMA_JOB_REDISPATCH_AFTER_S", "2")
    monkeypatch.setenv("KINEMA_JOB_LEASE_S", "5")
    monkeypatch.setenv("KINEMA_JOB_MAX_ATTEMPTS", "3")
    clear_caches()
    yield name
    redis_client.delete(name)


@pytest.fixture
def key_id(queue: str) -> str:
    with session_scope() as session:
        return keys.create_key(session, "sweeper-test").row.id


def _sweep(*mine: str) -> Any:
    """One sweep, its result narrowed to the test's jobs (earlier tests leave committed rows behind)."""
    from app.config import get_settings
    from worker.sweeper import SweepResult, sweep_jobs

    result = sweep_jobs(get_settings())
    return SweepResult(**{name: [j for j in getattr(result, name) if j in mine] for name in vars(result)})


def _tasks(redis_client: Any, queue: str, *mine: str) -> list[str]:
    """The ids of the test's jobs whose generation task waits in `queue`."""
    bodies = [json.loads(base64.b64decode(json.loads(m)["body"])) for m in redis_client.lrange(queue, 0, -1)]
    return [args[0] for args, _, _ in bodies if args[0] in mine]


def _ago(seconds: float) -> Any:
    return utcnow() - timedelta(seconds=seconds)


def test_a_queued_job_whose_task_was_lost_is_sent_again_once(
    key_id: str, queue: str, redis_client: Any
) -> None:
    lost = add_job(key_id, updated_at=_ago(10))
    assert _sweep(lost).resent == [lost]
    assert _tasks(redis_client, queue, lost) == [lost]
    # Its task is in the queue now: the next sweeps leave it be.
    assert _sweep(lost).resent == []
    assert _tasks(redis_client, queue, lost) == [lost]


def test_a_job_whose_task_waits_or_was_delivered_is_not_sent_again(
    key_id: str, queue: str, redis_client: Any
) -> None:
    from app.queue import enqueue_generation, get_celery

    waiting, delivered = add_job(key_id, updated_at=_ago(10)), add_job(key_id, updated_at=_ago(10))
    enqueue_generation(delivered)
    enqueue_generation(waiting)
    with get_celery().connection_for_read() as connection:
        # A worker took the first task and has not acknowledged it: it sits in kombu's `unacked` hash.
        message = connection.default_channel.basic_get(queue, no_ack=False)
        assert message is not None and json.loads(message.body)[0] == [delivered]
        assert _tasks(redis_client, queue, waiting, delivered) == [waiting]
        assert _sweep(waiting, delivered).resent == []
        message.ack()


def test_a_recently_queued_job_is_left_alone(key_id: str, queue: str, redis_client: Any) -> None:
    recent = add_job(key_id)  # its API process may not have sent the task yet
    assert _sweep(recent).resent == []
    assert _tasks(redis_client, queue, recent) == []


def test_a_running_job_whose_worker_stopped_goes_back_to_the_queue(
    key_id: str, queue: str, redis_client: Any
) -> None:
    job_id = add_job(
        key_id, status="in_progress", attempts=1, run_token="dead", worker="host:1", heartbeat_at=_ago(30)
    )
    result = _sweep(job_id)
    assert (result.requeued, result.resent) == ([job_id], [job_id])
    row = job_row(job_id)
    assert (row.status, row.run_token, row.worker, row.phase, row.attempts) == (
        "queued",
        None,
        None,
        "queued",
        1,
    )
    assert _tasks(redis_client, queue, job_id) == [job_id]
    # The worker that stopped cannot write to it any more, should it come back.
    with session_scope() as session:
        assert not runs.heartbeat(session, runs.Run(job_id, "dead"))
    # The next run takes it as a second attempt.
    with session_scope() as session:
        claimed, run = runs.claim(session, job_id, worker="host:2", lease_s=5, max_attempts=3)
    assert claimed is runs.ClaimResult.CLAIMED and run is not None and job_row(job_id).attempts == 2


def test_a_running_job_out_of_attempts_fails_with_worker_lost(
    key_id: str, queue: str, redis_client: Any
) -> None:
    job_id = add_job(key_id, status="in_progress", attempts=3, run_token="dead", heartbeat_at=_ago(30))
    result = _sweep(job_id)
    assert (result.failed, result.resent) == ([job_id], [])
    row = job_row(job_id)
    assert (row.status, row.error_code) == ("failed", "worker_lost")
    assert "3 attempts" in (row.error_message or "")
    assert _tasks(redis_client, queue, job_id) == []


def test_a_stale_job_with_a_cancel_request_is_canceled(key_id: str, queue: str) -> None:
    job_id = add_job(
        key_id,
        status="in_progress",
        attempts=1,
        run_token="dead",
        heartbeat_at=_ago(30),
        cancel_requested_at=_ago(40),
    )
    assert _sweep(job_id).canceled == [job_id]
    assert job_row(job_id).status == "canceled"


def test_a_running_job_with_a_live_worker_is_left_alone(key_id: str, queue: str, redis_client: Any) -> None:
    job_id = add_job(key_id, status="in_progress", attempts=1, run_token="live", heartbeat_at=_ago(1))
    result = _sweep(job_id)
    assert (result.requeued, result.failed, result.resent) == ([], [], [])
    assert job_row(job_id).status == "in_progress" and job_row(job_id).run_token == "live"


def test_a_task_delivered_for_an_exhausted_job_fails_it_instead_of_running_it(
    key_id: str, queue: str
) -> None:
    job_id = add_job(key_id, status="in_progress", attempts=3, run_token="dead", heartbeat_at=_ago(30))
    with session_scope() as session:
        assert runs.claim(session, job_id, worker="w", lease_s=5, max_attempts=3) == (
            runs.ClaimResult.GONE,
            None,
        )
    assert (job_row(job_id).status, job_row(job_id).error_code) == ("failed", "worker_lost")


def test_a_broker_that_cannot_be_listed_gets_tasks_only_when_its_queue_is_empty(
    key_id: str, queue: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.queue import get_celery

    monkeypatch.setenv("KINEMA_BROKER_URL", f"sqla+sqlite:///{tmp_path / 'broker.db'}")
    clear_caches()
    lost = add_job(key_id, updated_at=_ago(10))
    assert lost in _sweep(lost).resent
    with get_celery().connection_for_read() as connection:
        assert connection.default_channel.queue_declare(queue=queue, passive=True).message_count >= 1
    # The queue is not empty now, and its content cannot be read: nothing more is sent.
    assert _sweep(lost).resent == []
