"""Response bodies of the usage API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class UsageJobs(BaseModel):
    """The key's jobs submitted this period, by status."""

    queued: int
    in_progress: int
    succeeded: int
    failed: int
    canceled: int


class UsageLimits(BaseModel):
    """The limits in force for the key; null is unlimited."""

    requests_per_minute: int | None
    max_concurrent_jobs: int | None
    monthly_quota_s: int | None


class UsageOut(BaseModel):
    """GET /v1/usage."""

    object: Literal["usage"] = "usage"
    key_id: str
    period_start: datetime = Field(description="The first instant of this calendar month (UTC).")
    period_end: datetime = Field(description="The first instant of the next month: when the quota renews.")
    seconds_used: float = Field(description="Video seconds of jobs that succeeded this period.")
    seconds_reserved: float = Field(description="Video seconds of jobs queued or running.")
    seconds_limit: int | None = Field(description="The monthly quota; null: unlimited.")
    seconds_remaining: float | None = Field(description="What the key may still submit; null: unlimited.")
    running_jobs: int = Field(
        description="Jobs queued or in progress now (counted by the concurrency limit)."
    )
    jobs: UsageJobs
    limits: UsageLimits
