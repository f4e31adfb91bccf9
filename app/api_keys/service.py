"""Creating, listing and revoking API keys."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.api_keys.models import ApiKey
from app.db import utcnow
from app.errors import NotFound
from app.security import hash_key, new_key_material


@dataclass(frozen=True)
class CreatedKey:
    """A new key row and the plaintext key, which exists only here and is never stored."""

    row: ApiKey
    key: str


def create_key(session: Session, name: str) -> CreatedKey:
    """Create and commit a key named `name`."""
    prefix, key = new_key_material()
    row = ApiKey(id=f"key_{uuid.uuid4().hex}", name=name, prefix=prefix, key_hash=hash_key(key))
    session.add(row)
    session.commit()
    return CreatedKey(row=row, key=key)


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
    return row
