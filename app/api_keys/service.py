"""Creating, listing, changing and revoking API keys."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.api_keys.cache import announce_key_change
from app.api_keys.models import DEFAULT_SCOPES, ApiKey, Scope
from app.api_keys.schemas import MAX_LIMIT
from app.db import utcnow
from app.errors import InvalidRequest, NotFound
from app.security import hash_key, new_key_material

# The limit columns a key may set; None: the deployment's default, 0: unlimited.
LIMIT_FIELDS = ("rate_limit_rpm", "max_concurrent_jobs", "monthly_quota_s")


@dataclass(frozen=True)
class CreatedKey:
    """A new key row and the plaintext key, which exists only here and is never stored."""

    row: ApiKey
    key: str


def scopes_text(scopes: Iterable[str]) -> str:
    """The stored form of `scopes` (space-separated, in Scope order); unknown or no scopes are a 400."""
    wanted = set(scopes)
    unknown = sorted(wanted - set(Scope))
    if unknown:
        raise InvalidRequest(f"Unknown scope {unknown[0]!r}; scopes are {', '.join(Scope)}.", param="scopes")
    if not wanted:
        raise InvalidRequest("A key needs at least one scope.", param="scopes")
    return " ".join(scope for scope in Scope if scope in wanted)


def _check_limits(limits: dict[str, int | None]) -> None:
    for field, value in limits.items():
        if field not in LIMIT_FIELDS:
            raise InvalidRequest(f"Unknown limit {field!r}.", param=field)
        if value is not None and value < 0:
            raise InvalidRequest(f"{field} must be 0 (unlimited) or more.", param=field)
        if value is not None and value > MAX_LIMIT:
            raise InvalidRequest(f"{field} must be at most {MAX_LIMIT}.", param=field)


def create_key(
    session: Session,
    name: str,
    *,
    scopes: Iterable[str] = DEFAULT_SCOPES,
    rate_limit_rpm: int | None = None,
    max_concurrent_jobs: int | None = None,
    monthly_quota_s: int | None = None,
) -> CreatedKey:
    """Create and commit a key named `name` with `scopes` and its own limits (None: the defaults)."""
    limits = {
        "rate_limit_rpm": rate_limit_rpm,
        "max_concurrent_jobs": max_concurrent_jobs,
        "monthly_quota_s": monthly_quota_s,
    }
    _check_limits(limits)
    prefix, key = new_key_material()
    row = ApiKey(
        id=f"key_{uuid.uuid4().hex}",
        name=name,
        prefix=prefix,
        key_hash=hash_key(key),
        scopes=scopes_text(scopes),
        **limits,
    )
    session.add(row)
    session.commit()
    return CreatedKey(row=row, key=key)


def get_key(session: Session, key_id: str) -> ApiKey:
    """The key with id `key_id` (revoked ones included), or NotFound."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"No API key {key_id!r}.", param="id")
    return row


def update_key(
    session: Session,
    key_id: str,
    *,
    name: str | None = None,
    scopes: Iterable[str] | None = None,
    limits: dict[str, int | None] | None = None,
) -> ApiKey:
    """Change a key's name, scopes or limits (a limit set to None goes back to the default); commits."""
    row = get_key(session, key_id)
    if name is not None:
        row.name = name
    if scopes is not None:
        row.scopes = scopes_text(scopes)
    if limits:
        _check_limits(limits)
        for field, value in limits.items():
            setattr(row, field, value)
    session.commit()
    announce_key_change()
    return row


def list_keys(session: Session, *, include_revoked: bool = True) -> list[ApiKey]:
    """All keys, oldest first."""
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(session.scalars(query))


def revoke_key(session: Session, id_or_prefix: str) -> ApiKey:
    """Revoke a key by id, prefix or `kn_<prefix>`; revoking twice keeps the first time."""
    prefix = id_or_prefix.removeprefix("kn_").split("_")[0]
    row = session.scalar(select(ApiKey).where(or_(ApiKey.id == id_or_prefix, ApiKey.prefix == prefix)))
    if row is None:
        raise NotFound(f"No API key {id_or_prefix!r}.", param="key")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.commit()
        announce_key_change()
    return row
