"""Request and response bodies of the admin API for keys."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api_keys.models import DEFAULT_SCOPES, ApiKey, Scope

_LIMIT_HELP = "null: the deployment's default (KINEMA_DEFAULT_*); 0: unlimited."
# The limit columns are 32-bit integers: a larger value is a 400, not a database error.
MAX_LIMIT = 2**31 - 1


class KeyCreate(BaseModel):
    """POST /v1/admin/keys."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="A label, e.g. the team using the key.")
    scopes: list[Scope] = Field(
        default_factory=lambda: list(DEFAULT_SCOPES), min_length=1, description="generate, read, admin."
    )
    rate_limit_rpm: int | None = Field(
        default=None, ge=0, le=MAX_LIMIT, description=f"Requests per minute. {_LIMIT_HELP}"
    )
    max_concurrent_jobs: int | None = Field(
        default=None, ge=0, le=MAX_LIMIT, description=f"Jobs queued or running at once. {_LIMIT_HELP}"
    )
    monthly_quota_s: int | None = Field(
        default=None, ge=0, le=MAX_LIMIT, description=f"Seconds of video per calendar month. {_LIMIT_HELP}"
    )


class KeyUpdate(BaseModel):
    """PATCH /v1/admin/keys/{id}: only the fields sent change; a limit sent as null returns to the default."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    scopes: list[Scope] | None = Field(default=None, min_length=1)
    rate_limit_rpm: int | None = Field(default=None, ge=0, le=MAX_LIMIT)
    max_concurrent_jobs: int | None = Field(default=None, ge=0, le=MAX_LIMIT)
    monthly_quota_s: int | None = Field(default=None, ge=0, le=MAX_LIMIT)


class KeyOut(BaseModel):
    """A key as the admin API shows it: never the key itself, only its prefix."""

    id: str
    object: Literal["api_key"] = "api_key"
    name: str
    prefix: str = Field(description="`kn_` + the key's public prefix.")
    scopes: list[Scope]
    rate_limit_rpm: int | None
    max_concurrent_jobs: int | None
    monthly_quota_s: int | None
    created_at: datetime
    last_used_at: datetime | None = Field(description="When the key last submitted a job (to the minute).")
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: ApiKey) -> KeyOut:
        """The public view of a key row."""
        return cls(
            id=row.id,
            name=row.name,
            prefix=f"kn_{row.prefix}",
            scopes=row.scope_list,
            rate_limit_rpm=row.rate_limit_rpm,
            max_concurrent_jobs=row.max_concurrent_jobs,
            monthly_quota_s=row.monthly_quota_s,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
        )


class KeyCreated(KeyOut):
    """The answer to a create: the key itself, shown this once."""

    key: str = Field(description="The API key. Store it now: only its hash is kept.")


class KeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KeyOut]
