"""Concurrent jobs and the monthly quota, checked at submit against the job rows (the truth).

A job reserves its duration when it is submitted and counts in the calendar month (UTC) it was
submitted in: queued and running jobs are `reserved`, succeeded jobs `used`; failed and canceled jobs
cost nothing, so a failure or a cancel gives the seconds back with no bookkeeping of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, func, or_, select, update
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
# `api_keys.last_used_at` is kept to this resolution: a submit rarely rewrites the key's row.
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


# The admission's statements, built once (Core on the table: no ORM bookkeeping on the submit path).
_KEYS = cast(Table, ApiKey.__table__)
# Postgres: lock the key's row (no new row version) and read its count and last use.
_LOCK_KEY = (
    select(_KEYS.c.active_jobs, _KEYS.c.last_used_at)
    .where(_KEYS.c.id == bindparam("key_id"))
    .with_for_update()
)
_TOUCH_KEY = update(_KEYS).where(_KEYS.c.id == bindparam("key_id")).values(last_used_at=bindparam("now"))
# SQLite has no row locks: the write takes the database's write lock, then the count is read.
_TOUCH_KEY_RETURNING_COUNT = _TOUCH_KEY.returning(_KEYS.c.active_jobs)
_TOUCH_KEY_IF_STALE = _TOUCH_KEY.where(
    or_(_KEYS.c.last_used_at.is_(None), _KEYS.c.last_used_at < bindparam("stale_before"))
)


def _used_recently(last_used_at: datetime | None, now: datetime) -> bool:
    return last_used_at is not None and last_used_at >= now - LAST_USED_RESOLUTION


def admit_job(session: Session, key: ApiKey, duration_s: float, settings: Settings) -> None:
    """Refuse a new job of `duration_s` seconds over the key's concurrency or quota (429), else return.

    With a limit to enforce, the key's row stays locked until the caller commits the job, so
    concurrent submits of one key queue here; a key without limits takes no lock. `last_used_at` is
    written at most once per LAST_USED_RESOLUTION: most submits leave the key's row as it is.
    """
    limits = limits_of(key, settings)
    now = utcnow()
    connection = session.connection()
    if limits.max_concurrent_jobs <= 0 and limits.monthly_quota_s <= 0:
        # Nothing to count. The key row we hold (a cached copy at most a few seconds old) tells whether
        # the conditional write below could match at all; it rarely can.
        if not _used_recently(key.last_used_at, now):
            touch = {"key_id": key.id, "now": now, "stale_before": now - LAST_USED_RESOLUTION}
            connection.execute(_TOUCH_KEY_IF_STALE, touch)
        return
    # The key's row stays locked until commit; a concurrent submit of the key waits here, then reads
    # the count this one's job added (triggers).
    if connection.dialect.name == "sqlite":
        running = connection.execute(_TOUCH_KEY_RETURNING_COUNT, {"key_id": key.id, "now": now}).scalar()
    else:
        locked = connection.execute(_LOCK_KEY, {"key_id": key.id}).one_or_none()
        running = None if locked is None else locked.active_jobs
        if locked is not None and not _used_recently(locked.last_used_at, now):
            connection.execute(_TOUCH_KEY, {"key_id": key.id, "now": now})
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
