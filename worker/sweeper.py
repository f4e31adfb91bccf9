"""The job sweeper, run by Celery beat (`worker/tasks/sweeper.py`): jobs whose task or worker was lost.

- A running job whose heartbeat is older than KINEMA_JOB_LEASE_S (its worker died with its host, hung,
  or lost the database) goes back to `queued` and its task is sent again; once it has started
  KINEMA_JOB_MAX_ATTEMPTS times it fails with `worker_lost` instead.
- A queued job whose task the broker no longer holds (Redis restarted empty, a send lost on the way)
  KINEMA_JOB_REDISPATCH_AFTER_S after it was queued is sent again.

Both are safe to repeat and to race with workers: the claim is a compare-and-set on the job's status
and run token, so of two tasks for one job one runs it and the other finds nothing to do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import utcnow
from app.jobs import recovery
from app.jobs.live import get_progress_channel
from app.jobs.models import Job
from app.jobs.states import TERMINAL, JobStatus
from app.queue import QueueUnavailable, enqueue_generation, get_celery
from app.served_models import queue_for
from worker import broker
from worker.retry import with_db_retry

log = logging.getLogger(__name__)

# Jobs looked at per sweep and kind; more wait for the next sweep.
SWEEP_BATCH = 500


@dataclass
class SweepResult:
    """What one sweep did, by job id."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    canceled: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)


def _waiting_without_task(settings: Settings) -> list[str]:
    """Queued jobs older than the redispatch delay whose task the broker does not hold."""

    def read(session: Session) -> list[tuple[str, str]]:
        cutoff = utcnow() - timedelta(seconds=settings.job_redispatch_after_s)
        rows = session.execute(
            select(Job.id, Job.model)
            .where(Job.status == JobStatus.QUEUED, Job.updated_at < cutoff)
            .order_by(Job.id)
            .limit(SWEEP_BATCH)
        )
        return [(job_id, model) for job_id, model in rows]

    candidates = with_db_retry(read, what="reading queued jobs")
    orphans: list[str] = []
    lost_by_queue: dict[str, Callable[[str], bool]] = {}
    for job_id, model in candidates:
        queue = queue_for(model, settings)  # each model's jobs wait in its own queue
        if queue not in lost_by_queue:
            lost_by_queue[queue] = _lost_check(queue)
        if lost_by_queue[queue](job_id):
            orphans.append(job_id)
    return orphans


def _lost_check(queue: str) -> Callable[[str], bool]:
    """Whether a job's task is missing from `queue`, read from the broker once per sweep."""
    held = broker.held_job_ids(get_celery(), queue)
    if held is None:  # a transport we cannot list: only an empty queue proves the tasks are gone
        empty = broker.queue_is_empty(get_celery(), queue)
        return lambda _job_id: empty
    return lambda job_id: job_id not in held


def _models_of(job_ids: list[str]) -> dict[str, str]:
    """Job id -> model, to send each job to its model's queue."""
    if not job_ids:
        return {}
    rows = with_db_retry(
        lambda s: s.execute(select(Job.id, Job.model).where(Job.id.in_(job_ids))).all(),
        what="reading job models",
    )
    return {job_id: model for job_id, model in rows}


def _recover_stale(settings: Settings, result: SweepResult) -> None:
    stale = with_db_retry(
        lambda s: recovery.stale_job_ids(s, lease_s=settings.job_lease_s, limit=SWEEP_BATCH),
        what="reading stale jobs",
    )
    channel = get_progress_channel()
    for job_id in stale:
        recover = partial(
            recovery.recover,
            job_id=job_id,
            lease_s=settings.job_lease_s,
            max_attempts=settings.job_max_attempts,
        )
        status = with_db_retry(recover, what=f"recovering job {job_id}")
        if status is None:
            continue
        {
            JobStatus.QUEUED: result.requeued,
            JobStatus.FAILED: result.failed,
            JobStatus.CANCELED: result.canceled,
        }[status].append(job_id)
        log.warning("job %s: its worker stopped heartbeating; now %s", job_id, status)
        if status in TERMINAL and channel is not None:
            channel.announce(job_id, status)


def sweep_jobs(settings: Settings) -> SweepResult:
    """One sweep: recover stale running jobs, then send the tasks of re-queued and orphaned jobs."""
    result = SweepResult()
    _recover_stale(settings, result)
    orphans = _waiting_without_task(settings)
    to_send = list(dict.fromkeys([*result.requeued, *orphans]))
    models = _models_of(to_send)
    for job_id in to_send:
        try:
            enqueue_generation(job_id, models.get(job_id))
        except QueueUnavailable as exc:
            log.warning("job sweeper: the broker refused tasks (%s); the next sweep sends them", exc)
            break
        result.resent.append(job_id)
    if orphans:
        log.warning("job sweeper: %d queued jobs had lost their task; sent again: %s", len(orphans), orphans)
    return result
