"""Which limits apply to a key: its own, or the deployment's defaults; 0 is unlimited."""

from __future__ import annotations

from dataclasses import dataclass

from app.api_keys.models import ApiKey
from app.config import Settings


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """The limits in force for one key; 0 means unlimited."""

    rate_limit_rpm: int
    max_concurrent_jobs: int
    monthly_quota_s: int


def limits_of(key: ApiKey, settings: Settings) -> KeyLimits:
    """A key's own limits where it has them, else the KINEMA_DEFAULT_* settings."""
    return KeyLimits(
        rate_limit_rpm=_pick(key.rate_limit_rpm, settings.default_rate_limit_rpm),
        max_concurrent_jobs=_pick(key.max_concurrent_jobs, settings.default_max_concurrent_jobs),
        monthly_quota_s=_pick(key.monthly_quota_s, settings.default_monthly_quota_s),
    )


def _pick(own: int | None, default: int) -> int:
    return default if own is None else own
