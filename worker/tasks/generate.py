"""The generation task: takes a job id, never a job; safe to deliver twice."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import OperationalError

from app.config import get_settings
from app.jobs.runs import ClaimResult
from app.queue import GENERATE_TASK
from worker.celery_app import celery_app
from worker.execution import execute


@celery_app.task(
    name=GENERATE_TASK,
    bind=True,
    acks_late=True,
    # A database that is briefly unreachable delays the job rather than losing it.
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=None,
)
def generate_video(self: Any, job_id: str) -> str:
    """Run the job, or, while another live worker holds it, look again after the lease."""
    result = execute(job_id)
    if result is ClaimResult.BUSY:
        raise self.retry(countdown=get_settings().job_lease_s, max_retries=None)
    return result.value
