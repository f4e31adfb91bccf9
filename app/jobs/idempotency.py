"""Idempotent submits: a retried POST with the same `Idempotency-Key` gets the job the first one made.

A key belongs to the API key that sent it and replays for `KINEMA_IDEMPOTENCY_KEY_TTL_S` (24 h); after
that it makes a new job. The row's primary key (API key, Idempotency-Key) is what makes concurrent
duplicates create exactly one job: every insert but one fails, and those requests answer with its job.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import utcnow
from app.errors import Conflict, InvalidRequest
from app.jobs.models import IdempotencyKey, Job

HEADER = "Idempotency-Key"
MAX_LENGTH = 255


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """The caller's key and a fingerprint of what it asked for."""

    key: str
    request_hash: str


def fingerprint(endpoint: str, body: Mapping[str, Any]) -> str:
    """SHA-256 of the endpoint and the body as canonical JSON (key order and spacing do not matter)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(f"{endpoint}\n{canonical}".encode()).hexdigest()


def parse_header(value: str | None, *, endpoint: str, body: Mapping[str, Any]) -> IdempotentRequest | None:
    """The request's key and fingerprint, None without the header; a malformed key is a 400 naming it."""
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_LENGTH:
        raise InvalidRequest(f"The {HEADER} header must be 1 to {MAX_LENGTH} characters long.", param=HEADER)
    if any(not " " <= char <= "~" for char in value):
        raise InvalidRequest(f"The {HEADER} header must be printable ASCII.", param=HEADER)
    return IdempotentRequest(key=value, request_hash=fingerprint(endpoint, body))


def find_replay(session: Session, api_key_id: str, request: IdempotentRequest) -> Job | None:
    """The job an earlier request with this key made, or None; a different body under the key is a 409."""
    now = utcnow()
    row = session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.api_key_id == api_key_id, IdempotencyKey.key == request.key
        )
    )
    if row is None:
        return None
    if row.expires_at <= now:
        # Expired: forget it (and the caller's other expired keys) so this request makes a new job.
        session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.api_key_id == api_key_id, IdempotencyKey.expires_at <= now
            )
        )
        session.commit()
        return None
    if row.request_hash != request.request_hash:
        raise Conflict(
            f"This {HEADER} was already used with a different request; send a new key for a new request.",
            param=HEADER,
            code="idempotency_key_reused",
        )
    return session.get(Job, row.job_id)


def reserve_key(session: Session, api_key_id: str, request: IdempotentRequest, job_id: str) -> None:
    """Add the key's row for a new job; the caller commits it with the job, and a duplicate fails there."""
    now = utcnow()
    session.add(
        IdempotencyKey(
            api_key_id=api_key_id,
            key=request.key,
            request_hash=request.request_hash,
            job_id=job_id,
            created_at=now,
            expires_at=now + timedelta(seconds=get_settings().idempotency_key_ttl_s),
        )
    )


def release_key(session: Session, api_key_id: str, key: str) -> None:
    """Forget a key whose job never got queued, so a retry makes a new job; the caller commits."""
    session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.api_key_id == api_key_id, IdempotencyKey.key == key)
    )
