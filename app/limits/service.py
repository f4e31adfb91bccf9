"""Concurrent jobs and the monthly quota, checked at submit against the job rows (the truth).

A job reserves its duration when it is submitted and counts in the calendar month (UTC) it was
submitted in: queued and running jobs are `reserved`, succeeded jobs `used`; failed and canceled jobs
cost nothing, so a failure or a cancel gives the seconds back with no bookkeeping of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from app.api_keys.models import ApiKey
from app.config import Settings
from app.db import utcnow
from app.errors import RateLimited
from app.jobs.models import Job
from app.jobs.states import JobStatus
from app.limits.policy import KeyLimits, limits_of

ACTIVE: tuple[JobStatus, ...] = (JobStatus.QUEUED, JobStatus.IN_PROGRESS)
# What counts against the quota: failed and canceled jobs are free.
BILLABLE: tuple[JobStatus, ...] = (*ACTIVE, JobStatus.SUCCEEDED)
# A slot frees when one of the key's jobs ends, which nobody can predict; a short wait is a fair guess.
CONCURRENCY_RETRY_S = 10.0
# `api_keys.last_used_at` of a key without limits is kept to this resolution (fewer row writes).
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Period:
    """A quota period: one calendar month in UTC, `start` inclusive, `end` exclusive."""

    start: datetime
    end: datetime


def current_period(now: datetime | None = None) -> Period:
    """The calendar month (UTC) that `now` falls in."""
    now = (now or utcnow()).astimezone(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return Period(start, end)


@dataclass(frozen=True, slots=True)
class Usage:
    """A key's use of its limits in the current period."""

    period: Period
    limits: KeyLimits
    jobs: dict[JobStatus, int]
    seconds_used: float
    seconds_reserved: float
    running_jobs: int

    @property
    def seconds_remaining(self) -> float | None:
        """Seconds the key may still reserve this month; None when it has no quota."""
        if self.limits.monthly_quota_s <= 0:
            return None
        return max(0.0, self.limits.monthly_quota_s - self.seconds_used - self.seconds_reserved)


def _running_jobs(session: Session, key_id: str) -> int:
    """Jobs of the key queued or in progress, whenever they were submitted."""
    query = select(func.count()).select_from(Job).where(Job.api_key_id == key_id, Job.status.in_(ACTIVE))
    return int(session.scalar(query) or 0)


def _seconds_by_status(session: Session, key_id: str, period: Period) -> dict[JobStatus, tuple[int, float]]:
    """(jobs, seconds) per status of the key's jobs submitted in `period`."""
    rows = session.execute(
        select(Job.status, func.count(), func.coalesce(func.sum(Job.duration_s), 0.0))
        .where(
            Job.api_key_id == key_id,
            # Every status named, so the (api_key_id, status, created_at) index serves the range.
            Job.status.in_(list(JobStatus)),
            Job.created_at >= period.start,
            Job.created_at < period.end,
        )
        .group_by(Job.status)
    )
    return {JobStatus(status): (int(count), float(seconds)) for status, count, seconds in rows}


def usage_of(session: Session, key: ApiKey, settings: Settings, now: datetime | None = None) -> Usage:
    """What `GET /v1/usage` reports for `key`."""
    period = current_period(now)
    by_status = _seconds_by_status(session, key.id, period)
    return Usage(
        period=period,
        limits=limits_of(key, settings),
        jobs={status: by_status.get(status, (0, 0.0))[0] for status in JobStatus},
        seconds_used=by_status.get(JobStatus.SUCCEEDED, (0, 0.0))[1],
        seconds_reserved=sum(by_status.get(status, (0, 0.0))[1] for status in ACTIVE),
        running_jobs=_running_jobs(session, key.id),
    )


def admit_job(session: Session, key: ApiKey, duration_s: float, settings: Settings) -> None:
    """Refuse a new job of `duration_s` seconds over the key's concurrency or quota (429), else return.

    With a limit to enforce, the key's row stays locked until the caller commits the job, so
    concurrent submits of one key queue here; a key without limits takes no lock.
    """
    limits = limits_of(key, settings)
    now = utcnow()
    if limits.max_concurrent_jobs <= 0 and limits.monthly_quota_s <= 0:
        # Nothing to count: note the use at most once a minute, a write that rarely matches a row.
        session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == key.id,
                or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - LAST_USED_RESOLUTION),
            )
            .values(last_used_at=now)
        )
        return
    # Writing the key's row locks it (a row lock on Postgres, the write lock on SQLite) until commit; a
    # concurrent submit of the key waits here, then reads the count this one's job added (triggers).
    running = session.scalar(
        update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now).returning(ApiKey.active_jobs)
    )
    if limits.max_concurrent_jobs > 0 and running is not None and running >= limits.max_concurrent_jobs:
        raise RateLimited(
            f"This key has {running} jobs queued or running and may have at most "
            f"{limits.max_concurrent_jobs} at a time. Submit again when one of them finishes.",
            code="concurrency_limit_exceeded",
            retry_after_s=CONCURRENCY_RETRY_S,
        )
    if limits.monthly_quota_s > 0:
        period = current_period(now)
        by_status = _seconds_by_status(session, key.id, period)
        committed = sum(by_status.get(status, (0, 0.0))[1] for status in BILLABLE)
        if committed + duration_s > limits.monthly_quota_s:
            left = max(0.0, limits.monthly_quota_s - committed)
            raise RateLimited(
                f"This job's {duration_s:g} s would exceed the key's monthly quota of "
                f"{limits.monthly_quota_s} s of video: {committed:g} s are used or reserved this month, "
                f"{left:g} s are left. The quota renews on {period.end:%Y-%m-%d} (UTC).",
                code="quota_exceeded",
                param="duration",
                retry_after_s=(period.end - now).total_seconds(),
                # Retrying within the month cannot help; the openai SDK honours this header.
                headers={"x-should-retry": "false"},
            )
