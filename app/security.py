"""API key format, hashing, and the bearer-auth and scope dependencies."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.api_keys.cache import get_key_cache
from app.api_keys.models import ApiKey, Scope
from app.deps import SessionDep
from app.errors import AuthenticationFailed, PermissionDenied
from app.limits.rate import enforce_request_rate

KEY_SCHEME = "kn"
_ALPHABET = string.ascii_letters + string.digits
PREFIX_LENGTH = 10
SECRET_LENGTH = 32


def new_key_material() -> tuple[str, str]:
    """A fresh `(prefix, full key)`; the full key is `kn_<prefix>_<secret>` and is shown once."""
    prefix = "".join(secrets.choice(_ALPHABET) for _ in range(PREFIX_LENGTH))
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))
    return prefix, f"{KEY_SCHEME}_{prefix}_{secret}"


def hash_key(key: str) -> str:
    """SHA-256 of the whole key: keys carry 190 random bits, so a slow hash buys nothing."""
    return hashlib.sha256(key.encode()).hexdigest()


def split_key(key: str) -> str | None:
    """The prefix of a well-formed key, or None."""
    parts = key.split("_")
    if len(parts) != 3 or parts[0] != KEY_SCHEME:
        return None
    prefix, secret = parts[1], parts[2]
    if len(prefix) != PREFIX_LENGTH or len(secret) != SECRET_LENGTH:
        return None
    return prefix


def cached_key(key: str) -> ApiKey | None:
    """The key for `key` from the in-process key cache (no I/O), or None when it must be looked up."""
    if split_key(key) is None:
        return None
    return get_key_cache().get(hash_key(key))  # the cache key is the hash that matched when cached


def authenticate(session: Session, key: str) -> ApiKey:
    """The active key row for `key` (a detached copy when it came from the key cache), or
    AuthenticationFailed."""
    prefix = split_key(key)
    if prefix is None:
        raise AuthenticationFailed("Incorrect API key provided.")
    presented = hash_key(key)
    cache = get_key_cache()
    cached = cache.get(presented)
    if cached is not None:
        return cached  # its hash matched when it was cached: the cache key is that hash
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    # Compare even when no row exists so timing does not reveal which prefixes are real.
    expected = row.key_hash if row is not None else "0" * 64
    if not hmac.compare_digest(expected, presented) or row is None:
        raise AuthenticationFailed("Incorrect API key provided.")
    if not row.is_active:
        raise AuthenticationFailed("This API key has been revoked.", code="revoked_api_key")
    cache.put(presented, row)
    return row


def _bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise AuthenticationFailed(
            "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.", code="missing_api_key"
        )
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed("Send the API key as 'Authorization: Bearer <key>'.")
    return token.strip()


async def require_api_key(request: Request, session: SessionDep) -> ApiKey:
    """FastAPI dependency: the caller's active API key, its request counted against its rate limit.

    A cached key costs no thread: only a key lookup goes to the threadpool, and the rate limiter's
    Redis call is awaited on the event loop.
    """
    token = _bearer_token(request)
    key = cached_key(token)
    if key is None:
        key = await run_in_threadpool(authenticate, session, token)
    request.state.api_key_id = key.id
    await enforce_request_rate(request, key)
    return key


CurrentKey = Annotated[ApiKey, Depends(require_api_key)]


class RequireScope:
    """FastAPI dependency: the caller's key, if it has `scope`; else 403 naming the scope."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    async def __call__(self, key: CurrentKey) -> ApiKey:  # async: no I/O, so no threadpool hop
        if self.scope not in key.scope_list:
            raise PermissionDenied(
                f"This API key lacks the '{self.scope}' scope, which this endpoint needs "
                f"(the key has: {', '.join(key.scope_list) or 'no scopes'}).",
                code="missing_scope",
            )
        return key


GenerateKey = Annotated[ApiKey, Depends(RequireScope(Scope.GENERATE))]
ReadKey = Annotated[ApiKey, Depends(RequireScope(Scope.READ))]
AdminKey = Annotated[ApiKey, Depends(RequireScope(Scope.ADMIN))]
