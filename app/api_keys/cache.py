"""Authenticated keys remembered in process for a few seconds, so most requests need no key lookup.

Only keys that authenticated are cached, by the SHA-256 of the presented token, as detached copies of
their rows. A revoke or an update clears the cache of the process that made it at once and, through a
Redis channel every API process listens on, the caches of the others; `KINEMA_AUTH_CACHE_TTL_S`
bounds how stale an entry can be when that message is lost (Redis down) or when a key is changed
behind the API's back (SQL by hand). A TTL of 0 turns the cache off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import lru_cache

import redis
from sqlalchemy import inspect

from app.api_keys.models import ApiKey
from app.config import get_settings

log = logging.getLogger(__name__)

CHANGES_CHANNEL = "kinema:api_keys:changed"
# Bounds memory under a flood of distinct valid keys; the cache is cleared, not evicted one by one.
MAX_ENTRIES = 10_000
_RETRY_S = 1.0


def detached_copy(row: ApiKey) -> ApiKey:
    """A copy of the key's column values that belongs to no session (safe to share across requests)."""
    columns = inspect(ApiKey).column_attrs
    return ApiKey(**{attr.key: getattr(row, attr.key) for attr in columns})


class KeyCache:
    """Token hash -> key row copy, each entry valid for `ttl_s` seconds."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, tuple[float, ApiKey]] = {}
        self._lock = threading.Lock()
        self.listener: ChangeListener | None = None

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    def get(self, token_hash: str) -> ApiKey | None:
        """The cached key for this token hash, if it is there and fresh."""
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        expires_at, key = entry
        if self._clock() >= expires_at:
            with self._lock:
                self._entries.pop(token_hash, None)
            return None
        return key

    def put(self, token_hash: str, row: ApiKey) -> None:
        """Remember an authenticated, active key."""
        if not self.enabled:
            return
        copy = detached_copy(row)
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[token_hash] = (self._clock() + self.ttl_s, copy)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def close(self) -> None:
        """Stop listening for changes (a cache being replaced, e.g. after the settings changed)."""
        if self.listener is not None:
            self.listener.stop()


class ChangeListener(threading.Thread):
    """Clears a cache whenever any process announces a key change on Redis (and after every
    reconnect, since messages sent while disconnected are lost)."""

    def __init__(self, cache: KeyCache, redis_url: str) -> None:
        super().__init__(name="kinema-key-cache", daemon=True)
        self.cache = cache
        self.redis_url = redis_url
        self.subscribed = threading.Event()
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                client = redis.Redis.from_url(
                    self.redis_url, socket_connect_timeout=2, health_check_interval=30
                )
                with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    pubsub.subscribe(CHANGES_CHANNEL)
                    self.cache.clear()
                    self.subscribed.set()
                    while not self._stop.is_set():
                        if pubsub.get_message(timeout=1.0) is not None:
                            self.cache.clear()
            except redis.RedisError as exc:
                self.subscribed.clear()
                self.cache.clear()
                log.debug("key-change listener lost Redis (%s); retrying", exc)
                self._stop.wait(_RETRY_S)

    def stop(self) -> None:
        self._stop.set()


@lru_cache
def get_key_cache() -> KeyCache:
    """The process's key cache; with Redis configured, its change listener runs in the background."""
    settings = get_settings()
    cache = KeyCache(settings.auth_cache_ttl_s)
    if cache.enabled and settings.redis_url:
        cache.listener = ChangeListener(cache, settings.redis_url)
        cache.listener.start()
    return cache


def announce_key_change() -> None:
    """After a key's row changed (revoked, new scopes or limits): forget cached keys here and everywhere."""
    get_key_cache().clear()
    redis_url = get_settings().redis_url
    if not redis_url:
        return
    try:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
        client.publish(CHANGES_CHANNEL, "1")
        client.close()
    except redis.RedisError as exc:
        log.warning(
            "could not announce a key change on Redis (%s); other API processes notice it within "
            "KINEMA_AUTH_CACHE_TTL_S",
            exc,
        )
