"""`GET /v1/usage`: the caller's key against its limits this month."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import SessionDep, SettingsDep
from app.limits import service
from app.limits.schemas import UsageJobs, UsageLimits, UsageOut
from app.security import ReadKey

router = APIRouter(prefix="/v1", tags=["usage"])


def _unlimited_as_none(value: int) -> int | None:
    return value if value > 0 else None


@router.get("/usage", response_model=UsageOut, summary="Your key's usage and limits this month")
def get_usage(key: ReadKey, session: SessionDep, settings: SettingsDep) -> UsageOut:
    """Video seconds used and reserved this calendar month (UTC), jobs by status, and the key's limits."""
    usage = service.usage_of(session, key, settings)
    limits = usage.limits
    return UsageOut(
        key_id=key.id,
        period_start=usage.period.start,
        period_end=usage.period.end,
        seconds_used=usage.seconds_used,
        seconds_reserved=usage.seconds_reserved,
        seconds_limit=_unlimited_as_none(limits.monthly_quota_s),
        seconds_remaining=usage.seconds_remaining,
        running_jobs=usage.running_jobs,
        jobs=UsageJobs(**{str(status): count for status, count in usage.jobs.items()}),
        limits=UsageLimits(
            requests_per_minute=_unlimited_as_none(limits.rate_limit_rpm),
            max_concurrent_jobs=_unlimited_as_none(limits.max_concurrent_jobs),
            monthly_quota_s=_unlimited_as_none(limits.monthly_quota_s),
        ),
    )
