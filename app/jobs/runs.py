"""Jobs as a worker sees them: claim a run, heartbeat, report progress, finish. Every write is a
compare-and-set on the status and the run's token, so a redelivered task never runs a finished job
and a worker that lost its job can no longer write to it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from app.db import utcnow
from app.jobs import recovery
from app.jobs.models import Job
from app.jobs.states import TERMINAL, JobStatus, sources_of
from app.webhooks import events


class ClaimResult(Enum):
    CLAIMED = "claimed"
    # Finished, canceled or deleted: the task has nothing to do.
    GONE = "gone"
    # Another run holds the job and its heartbeat is fresh: try again after the lease.
    BUSY = "busy"


@dataclass(frozen=True, slots=True)
class Run:
    """One attempt at a job, owned by one worker process."""

    job_id: str
    token: str


def claim(
    session: Session, job_id: str, *, worker: str, lease_s: float, max_attempts: int | None = None
) -> tuple[ClaimResult, Run | None]:
    """Take a queued job, or an in-progress job whose worker stopped heartbeating; one that already ran
    `max_attempts` times is failed (`worker_lost`) instead of taken over."""
    now = utcnow()
    token = uuid.uuid4().hex
    stale = now - timedelta(seconds=lease_s)
    takeover = and_(
        Job.status == JobStatus.IN_PROGRESS, or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale)
    )
    if max_attempts is not None:
        takeover = and_(takeover, Job.attempts < max_attempts)
    takeable = or_(Job.status == JobStatus.QUEUED, takeover)
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(sources_of(JobStatus.IN_PROGRESS)), takeable)
        .values(
            status=JobStatus.IN_PROGRESS,
            run_token=token,
            attempts=Job.attempts + 1,
            worker=worker,
            heartbeat_at=now,
            started_at=now,
            phase="loading",
            progress=0,
            step=0,
            expected_finish_at=None,
        )
    )
    claimed = bool(result.rowcount)  # type: ignore[attr-defined]
    # Only the first claim takes the job out of `queued`; a takeover after a lost worker is no new event.
    if claimed and session.scalar(select(Job.attempts).where(Job.id == job_id)) == 1:
        events.record_job_event(session, job_id, "video.in_progress")
    session.commit()
    if claimed:
        return ClaimResult.CLAIMED, Run(job_id=job_id, token=token)
    status = session.scalar(select(Job.status).where(Job.id == job_id))
    if status is None or JobStatus(status) in TERMINAL:
        return ClaimResult.GONE, None
    if max_attempts is not None and recovery.fail_exhausted(
        session, job_id, lease_s=lease_s, max_attempts=max_attempts
    ):
        return ClaimResult.GONE, None
    return ClaimResult.BUSY, None


def _owned(run: Run, target: JobStatus) -> Any:
    return and_(Job.id == run.job_id, Job.run_token == run.token, Job.status.in_(sources_of(target)))


def heartbeat(session: Session, run: Run, **values: Any) -> bool:
    """Refresh the lease (and write any progress values); False when the run no longer owns the job."""
    result = session.execute(
        update(Job).where(_owned(run, JobStatus.IN_PROGRESS)).values(heartbeat_at=utcnow(), **values)
    )
    session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def succeed(session: Session, run: Run, **outputs: Any) -> bool:
    """Record the output and mark the job succeeded, if this run still owns it."""
    result = session.execute(
        update(Job)
        .where(_owned(run, JobStatus.SUCCEEDED))
        .values(status=JobStatus.SUCCEEDED, phase="done", progress=100, finished_at=utcnow(), **outputs)
    )
    owned = bool(result.rowcount)  # type: ignore[attr-defined]
    if owned:
        events.record_job_event(session, run.job_id, "video.completed")
    session.commit()
    return owned


def fail(session: Session, run: Run, *, code: str, message: str) -> bool:
    """Mark the job failed with an error code, if this run still owns it."""
    result = session.execute(
        update(Job)
        .where(_owned(run, JobStatus.FAILED))
        .values(status=JobStatus.FAILED, error_code=code, error_message=message[:2000], finished_at=utcnow())
    )
    owned = bool(result.rowcount)  # type: ignore[attr-defined]
    if owned:
        events.record_job_event(session, run.job_id, "video.failed")
    session.commit()
    return owned


def cancel(session: Session, run: Run) -> bool:
    """Mark the job canceled, if this run still owns it; the `video.canceled` event commits with it."""
    result = session.execute(
        update(Job)
        .where(_owned(run, JobStatus.CANCELED))
        .values(status=JobStatus.CANCELED, finished_at=utcnow(), expected_finish_at=None)
    )
    owned = bool(result.rowcount)  # type: ignore[attr-defined]
    if owned:
        events.record_job_event(session, run.job_id, "video.canceled")
    session.commit()
    return owned


def cancel_requested(session: Session, job_id: str) -> bool:
    """Whether a cancel was asked for the job (the row's flag, for deployments without Redis)."""
    return session.scalar(select(Job.cancel_requested_at).where(Job.id == job_id)) is not None
