"""Delete a job: cancel it if it is still running, remove its stored files, then its row."""

from __future__ import annotations

import logging

from sqlalchemy import delete as sql_delete
from sqlalchemy.orm import Session

from app.api_keys.models import ApiKey
from app.jobs import cancel
from app.jobs.models import Job
from app.jobs.service import get_job
from app.jobs.states import TERMINAL, JobStatus
from app.storage import get_storage

log = logging.getLogger(__name__)


def delete_job(session: Session, key: ApiKey, job_id: str, *, lease_s: float) -> str:
    """Delete the caller's job, its outputs and its input; returns its id. Another key's job is a 404.

    A queued or running job is canceled first (a running worker stops at its next step and stores
    nothing). The files go before the row, so a failed storage call leaves a job that can be deleted again.
    """
    job = get_job(session, key, job_id)
    if JobStatus(job.status) not in TERMINAL:
        job = cancel.cancel(session, key, job_id, lease_s=lease_s)
    storage = get_storage()
    for object_key in (job.video_key, job.thumbnail_key, job.spritesheet_key, job.input_key):
        if object_key:
            storage.delete(object_key)
    # The idempotency keys that point at it go with it (ON DELETE CASCADE).
    session.execute(sql_delete(Job).where(Job.id == job.id))
    session.commit()
    log.info("job %s deleted", job_id)
    return job_id
