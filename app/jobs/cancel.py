"""Cancel a job: a queued one at once, a running one through a request its worker reads every step.

Every change is a compare-and-set on the status (the state table in `states.py`), so a cancel racing a
worker's claim or finish either wins cleanly or sees the new status and acts on that.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import and_, func, or_, update
from sqlalchemy.orm import Session

from app.api_keys.models import ApiKey
from app.db import utcnow
from app.errors import Conflict
from app.jobs.live import get_progress_channel
from app.jobs.models import Job
from app.jobs.service import get_job
from app.jobs.states import TERMINAL, JobStatus, sources_of
from app.webhooks import events

log = logging.getLogger(__name__)

# A cancel racing other writers looks again this many times; each race means the status moved on.
ATTEMPTS = 4


def cancel(session: Session, key: ApiKey, job_id: str, *, lease_s: float) -> Job:
    """Cancel the caller's job and return it; a finished one is a 409, another key's a 404.

    A queued job, or a running one whose worker stopped heartbeating for `lease_s`, is `canceled` now.
    A running job gets `cancel_requested_at` (and the Redis flag); its worker stops at the next step.
    """
    job = get_job(session, key, job_id)
    for _ in range(ATTEMPTS):
        status = JobStatus(job.status)
        if status is JobStatus.CANCELED:
            return job  # canceling twice is not an error
        if status in TERMINAL:
            raise Conflict(
                f"Job {job_id} already {status}; only queued or running jobs can be canceled.",
                param="id",
                code="job_already_finished",
            )
        done = _cancel_now(session, job, status, lease_s) or (
            status is JobStatus.IN_PROGRESS and _request_cancel(session, job)
        )
        session.refresh(job)
        if done:
            return job
    return job


def _cancel_now(session: Session, job: Job, status: JobStatus, lease_s: float) -> bool:
    """queued -> canceled, or in_progress -> canceled when its worker is gone; the event commits with it."""
    now = utcnow()
    condition = Job.status == status
    if status is JobStatus.IN_PROGRESS:
        stale = now - timedelta(seconds=lease_s)
        condition = and_(condition, or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale))
    result = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status.in_(sources_of(JobStatus.CANCELED)), condition)
        .values(
            status=JobStatus.CANCELED,
            finished_at=now,
            cancel_requested_at=func.coalesce(Job.cancel_requested_at, now),
            expected_finish_at=None,
        )
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        session.rollback()
        return False
    events.record_job_event(session, job.id, "video.canceled")
    session.commit()
    channel = get_progress_channel()
    if channel is not None:
        channel.announce(job.id, JobStatus.CANCELED)
    log.info("job %s canceled while %s", job.id, status)
    return True


def _request_cancel(session: Session, job: Job) -> bool:
    """Record a cancel request for a running job; its worker sees the flag (or the row) and stops."""
    result = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == JobStatus.IN_PROGRESS)
        .values(cancel_requested_at=func.coalesce(Job.cancel_requested_at, utcnow()))
    )
    session.commit()
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    channel = get_progress_channel()
    if channel is not None:
        channel.request_cancel(job.id)
    log.info("cancel requested for running job %s", job.id)
    return True
