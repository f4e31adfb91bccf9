"""The `api_keys` table: only a hash of each key is stored, found by its public prefix."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow


class Scope(StrEnum):
    """What a key may do: submit jobs, read its jobs and usage, manage keys."""

    GENERATE = "generate"
    READ = "read"
    ADMIN = "admin"


# Keys made before scopes existed, and keys made without naming any, get these.
DEFAULT_SCOPES: tuple[Scope, ...] = (Scope.GENERATE, Scope.READ)
DEFAULT_SCOPES_TEXT = " ".join(DEFAULT_SCOPES)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    # Space-separated, like OAuth scopes.
    scopes: Mapped[str] = mapped_column(
        String(100), default=DEFAULT_SCOPES_TEXT, server_default=DEFAULT_SCOPES_TEXT
    )
    # Limits of this key; None: the deployment's default (KINEMA_DEFAULT_*), 0: unlimited.
    rate_limit_rpm: Mapped[int | None] = mapped_column(default=None)
    max_concurrent_jobs: Mapped[int | None] = mapped_column(default=None)
    monthly_quota_s: Mapped[int | None] = mapped_column(default=None)
    # The key's queued and running jobs, kept by triggers on `jobs` (migration 0008): read, never written.
    active_jobs: Mapped[int] = mapped_column(default=0, server_default="0")

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def scope_list(self) -> list[Scope]:
        """The key's scopes, in the order of the Scope enum."""
        granted = set(self.scopes.split())
        return [scope for scope in Scope if scope in granted]
