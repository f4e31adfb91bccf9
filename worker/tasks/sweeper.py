"""The job sweeper task, sent by Celery beat every KINEMA_JOB_SWEEP_INTERVAL_S (see `worker/sweeper.py`)."""

from __future__ import annotations

from app.config import get_settings
from app.queue import JOB_SWEEP_TASK
from worker.celery_app import celery_app
from worker.sweeper import sweep_jobs


@celery_app.task(name=JOB_SWEEP_TASK, acks_late=True, ignore_result=True)
def sweep_lost_jobs() -> dict[str, int]:
    """Re-queue (or fail) running jobs whose worker stopped, and re-send queued jobs whose task was lost."""
    result = sweep_jobs(get_settings())
    return {
        "requeued": len(result.requeued),
        "failed": len(result.failed),
        "canceled": len(result.canceled),
        "resent": len(result.resent),
    }
