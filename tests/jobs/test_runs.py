"""The state machine and the worker's compare-and-set writes: a job finishes once, whoever delivers it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from app.db import utcnow
from app.jobs import runs
from app.jobs.models import Job
from app.jobs.states import TERMINAL, TRANSITIONS, JobStatus, can_transition, sources_of


def test_terminal_states_have_no_way_out() -> None:
    assert {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED} == TERMINAL
    for status in TERMINAL:
        assert all(not can_transition(status, target) for target in JobStatus)
    assert can_transition(JobStatus.QUEUED, JobStatus.IN_PROGRESS)
    assert not can_transition(JobStatus.QUEUED, JobStatus.SUCCEEDED)
    assert sources_of(JobStatus.SUCCEEDED) == {JobStatus.IN_PROGRESS}
    assert set(TRANSITIONS) == set(JobStatus)


def _reload(db_session: Any, job: Job) -> Job:
    db_session.expire_all()
    row = db_session.get(Job, job.id)
    assert row is not None
    return row


def test_claim_then_succeed_once(db_session: Any, make_key: Any, make_job: Any) -> None:
    key, _ = make_key()
    job = make_job(key)
    result, run = runs.claim(db_session, job.id, worker="w1:1", lease_s=60)
    assert result is runs.ClaimResult.CLAIMED and run is not None
    row = _reload(db_session, job)
    assert (row.status, row.attempts, row.worker, row.phase) == ("in_progress", 1, "w1:1", "loading")

    # A second delivery while the first run is alive: busy, not a second run.
    assert runs.claim(db_session, job.id, worker="w2:2", lease_s=60) == (runs.ClaimResult.BUSY, None)

    assert runs.succeed(db_session, run, video_key="k", output_frames=16)
    row = _reload(db_session, job)
    assert (row.status, row.progress, row.video_key) == ("succeeded", 100, "k")
    # Redelivered after success: nothing to do, and nothing can be written any more.
    assert runs.claim(db_session, job.id, worker="w2:2", lease_s=60) == (runs.ClaimResult.GONE, None)
    assert not runs.succeed(db_session, run, video_key="other")
    assert not runs.fail(db_session, run, code="x", message="y")
    assert _reload(db_session, job).video_key == "k"


def test_stale_run_is_taken_over_and_loses_its_writes(db_session: Any, make_key: Any, make_job: Any) -> None:
    key, _ = make_key()
    job = make_job(key)
    _, first = runs.claim(db_session, job.id, worker="w1:1", lease_s=60)
    assert first is not None
    # The first worker died: its heartbeat is older than the lease.
    _reload(db_session, job).heartbeat_at = utcnow() - timedelta(seconds=120)
    db_session.commit()
    result, second = runs.claim(db_session, job.id, worker="w2:2", lease_s=60)
    assert result is runs.ClaimResult.CLAIMED and second is not None
    assert _reload(db_session, job).attempts == 2
    assert not runs.heartbeat(db_session, first, progress=50)
    assert not runs.succeed(db_session, first, video_key="stale")
    assert runs.heartbeat(db_session, second, progress=10)
    assert runs.succeed(db_session, second, video_key="fresh")
    row = _reload(db_session, job)
    assert (row.status, row.video_key, row.worker) == ("succeeded", "fresh", "w2:2")


def test_unknown_job_is_gone(db_session: Any) -> None:
    assert runs.claim(db_session, "video_missing", worker="w", lease_s=60) == (runs.ClaimResult.GONE, None)


@pytest.mark.parametrize("status", ["failed", "canceled"])
def test_finished_jobs_are_never_claimed(db_session: Any, make_key: Any, make_job: Any, status: str) -> None:
    key, _ = make_key()
    job = make_job(key, status=status)
    assert runs.claim(db_session, job.id, worker="w", lease_s=60)[0] is runs.ClaimResult.GONE
    assert _reload(db_session, job).attempts == 0


def test_fail_records_the_error(db_session: Any, make_key: Any, make_job: Any) -> None:
    key, _ = make_key()
    job = make_job(key)
    _, run = runs.claim(db_session, job.id, worker="w", lease_s=60)
    assert run is not None
    assert runs.fail(db_session, run, code="generation_failed", message="boom")
    row = _reload(db_session, job)
    assert (row.status, row.error_code, row.error_message) == ("failed", "generation_failed", "boom")
    assert row.finished_at is not None
