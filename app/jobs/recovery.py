"""Jobs whose worker was lost: a running job whose heartbeat is older than the lease goes back to the
queue, or fails once it has used its attempts (or is canceled, if a cancel was asked meanwhile).

Each change is a compare-and-set on the status and the stale heartbeat, like every run write in
`runs.py`: a worker that comes back to life finds its run token gone and its writes refused.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from app.db import utcnow
from app.jobs.models import Job
from app.jobs.states import JobStatus, sources_of
from app.webhooks import events

# The error code of a job whose workers kept dying under it.
WORKER_LOST = "worker_lost"


def _stale(lease_s: float) -> Any:
    """A running job whose worker has not heartbeated for `lease_s`."""
    cutoff = utcnow() - timedelta(seconds=lease_s)
    return and_(
        Job.status == JobStatus.IN_PROGRESS, or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < cutoff)
    )


def stale_job_ids(session: Session, *, lease_s: float, limit: int) -> list[str]:
    """Running jobs whose worker stopped heartbeating, oldest heartbeat first."""
    return list(
        session.scalars(select(Job.id).where(_stale(lease_s)).order_by(Job.heartbeat_at).limit(limit))
    )


def fail_exhausted(session: Session, job_id: str, *, lease_s: float, max_attempts: int) -> bool:
    """Fail a stale job that already ran `max_attempts` times with `worker_lost`; commits."""
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.status.in_(sources_of(JobStatus.FAILED)),
            _stale(lease_s),
            Job.attempts >= max_attempts,
        )
        .values(
            status=JobStatus.FAILED,
            error_code=WORKER_LOST,
            error_message=(
                f"The job's worker stopped (crashed, was killed or lost its connection) on each of its "
                f"{max_attempts} attempts; the job was not retried again."
            ),
            finished_at=utcnow(),
            expected_finish_at=None,
            run_token=None,
        )
    )
    failed = bool(result.rowcount)  # type: ignore[attr-defined]
    if failed:
        events.record_job_event(session, job_id, "video.failed")
    session.commit()
    return failed


def _cancel_asked(session: Session, job_id: str, lease_s: float) -> bool:
    """A stale job whose cancel its worker never saw: canceled now; commits."""
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.status.in_(sources_of(JobStatus.CANCELED)),
            _stale(lease_s),
            Job.cancel_requested_at.is_not(None),
        )
        .values(status=JobStatus.CANCELED, finished_at=utcnow(), expected_finish_at=None, run_token=None)
    )
    canceled = bool(result.rowcount)  # type: ignore[attr-defined]
    if canceled:
        events.record_job_event(session, job_id, "video.canceled")
    session.commit()
    return canceled


def _requeue(session: Session, job_id: str, lease_s: float, max_attempts: int) -> bool:
    """A stale job with attempts left back to `queued`, its run token cleared; commits."""
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.status.in_(sources_of(JobStatus.QUEUED)),
            _stale(lease_s),
            Job.attempts < max_attempts,
            Job.cancel_requested_at.is_(None),
        )
        .values(
            status=JobStatus.QUEUED,
            run_token=None,
            worker=None,
            heartbeat_at=None,
            started_at=None,
            phase="queued",
            progress=0,
            step=0,
            expected_finish_at=None,
        )
    )
    session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def recover(session: Session, job_id: str, *, lease_s: float, max_attempts: int) -> JobStatus | None:
    """Re-queue, fail or cancel one stale job; None if it is no longer stale (its worker came back, or
    another run took it over). The caller sends the task of a job that went back to `queued`."""
    if _cancel_asked(session, job_id, lease_s):
        return JobStatus.CANCELED
    if fail_exhausted(session, job_id, lease_s=lease_s, max_attempts=max_attempts):
        return JobStatus.FAILED
    if _requeue(session, job_id, lease_s, max_attempts):
        return JobStatus.QUEUED
    return None
