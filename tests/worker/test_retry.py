"""Retries with backoff: the budget rules, and a worker's state writes across Postgres connections that were
really terminated (pg_terminate_backend), not simulated."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from app.api_keys import service as keys
from app.db import get_engine, session_scope
from app.jobs.runs import ClaimResult
from tests.conftest import POSTGRES_URL, clear_caches
from tests.worker.committed import add_job, job_row
from worker.retry import Backoff, call_with_retry, with_db_retry


class Flaky:
    """Fails `failures` times with `error`, then answers "ok"; its clock moves only by the waits given."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    def clock(self) -> float:
        return sum(self.waits)

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


def _retry(flaky: Flaky, backoff: Backoff) -> str:
    return call_with_retry(
        flaky,
        retry_if=lambda e: isinstance(e, ConnectionError),
        backoff=backoff,
        what="x",
        sleep=flaky.sleep,
        clock=flaky.clock,
    )


def test_retries_wait_twice_as_long_each_time_up_to_the_cap() -> None:
    flaky = Flaky(4, ConnectionError("down"))
    assert _retry(flaky, Backoff(attempts=6, deadline_s=60, first_wait_s=0.5, max_wait_s=3)) == "ok"
    assert flaky.calls == 5 and flaky.waits == [0.5, 1.0, 2.0, 3.0]


def test_the_last_error_propagates_once_the_attempts_are_spent() -> None:
    flaky = Flaky(10, ConnectionError("still down"))
    with pytest.raises(ConnectionError, match="still down"):
        _retry(flaky, Backoff(attempts=3, deadline_s=60, first_wait_s=0.1, max_wait_s=1))
    assert flaky.calls == 3 and flaky.waits == [0.1, 0.2]


def test_no_wait_goes_past_the_deadline() -> None:
    flaky = Flaky(10, ConnectionError("down"))
    with pytest.raises(ConnectionError):
        _retry(flaky, Backoff(attempts=None, deadline_s=2.5, first_wait_s=1, max_wait_s=10))
    assert flaky.waits == [1.0]  # a second wait of 2 s would end after the 2.5 s budget


def test_other_errors_are_not_retried() -> None:
    flaky = Flaky(1, ValueError("a bug"))
    with pytest.raises(ValueError):
        _retry(flaky, Backoff(attempts=5, deadline_s=60, first_wait_s=0.1, max_wait_s=1))
    assert flaky.calls == 1


@pytest.fixture
def pooled_backends(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`terminate()` kills the server side of every connection this process's pool holds (they stay in the
    pool, idle for less than the pre-ping interval, so the next statement on one fails). The connections
    carry a name of their own: other processes on the test database are left alone."""
    name = "kinema-retry-test"
    monkeypatch.setenv(
        "KINEMA_DATABASE_URL", f"{settings_env['KINEMA_DATABASE_URL']}?application_name={name}"
    )
    clear_caches()

    def terminate() -> int:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (name,)
            ).fetchall()
        return len(rows)

    yield terminate


def test_a_write_on_a_terminated_connection_is_retried_on_a_fresh_one(
    pooled_backends: Any, caplog: pytest.LogCaptureFixture
) -> None:
    assert pooled_backends() >= 1
    with pytest.raises(OperationalError), session_scope() as session:
        session.execute(text("SELECT 1"))  # without the retry: the dropped connection is an error

    assert pooled_backends() >= 1
    with caplog.at_level(logging.WARNING, logger="worker.retry"):
        assert with_db_retry(lambda s: s.scalar(text("SELECT 41 + 1")), what="the answer") == 42
    assert "the answer failed (attempt 1)" in caplog.text


def test_a_failed_statement_is_not_retried(settings_env: dict[str, str]) -> None:
    calls = []

    def duplicate(session: Any) -> None:
        calls.append(1)
        raise IntegrityError("INSERT", {}, Exception("duplicate key"))

    with pytest.raises(IntegrityError):
        with_db_retry(duplicate, what="insert")
    assert calls == [1]


def test_a_job_claimed_over_a_terminated_connection_runs_once(pooled_backends: Any) -> None:
    from worker.execution import execute

    with session_scope() as session:
        key_id = keys.create_key(session, "retry-test").row.id
    job_id = add_job(key_id)
    assert pooled_backends() >= 1  # the claim's connection is dead before it starts
    assert execute(job_id) is ClaimResult.CLAIMED
    row = job_row(job_id)
    assert (row.status, row.attempts) == ("succeeded", 1)
