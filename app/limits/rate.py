"""Requests per minute per key: a sliding-window log (exact: at most `limit` requests in any 60 s).

With KINEMA_REDIS_URL set, the log is a Redis sorted set per key, trimmed, counted and appended in one
Lua script, so every API process shares one atomic count. Without Redis (the embedded default), or
while Redis does not answer, each process keeps its own log in memory. Requests are counted on the
event loop (redis.asyncio): a thread hop around a blocking Redis call cost four times the call.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.retry import Retry
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from app.api_keys.models import ApiKey
from app.config import get_settings
from app.errors import RateLimited
from app.limits.policy import limits_of

log = logging.getLogger(__name__)

WINDOW_S = 60
# Where the API error path and the header middleware find the request's rate status.
STATE_KEY = "rate_limit"
# After a Redis error, use the in-process log this long before trying Redis again.
REDIS_RETRY_S = 5.0

# KEYS[1]: the key's log. ARGV: limit, window in ms, a random tag that makes each entry unique.
# Returns {allowed, remaining, ms until one more request is allowed, ms until the log is empty}.
_SLIDING_WINDOW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count < limit then
  redis.call('ZADD', KEYS[1], now, now .. '-' .. ARGV[3])
  count = count + 1
  allowed = 1
end
redis.call('PEXPIRE', KEYS[1], window)
local retry = 0
if count >= limit then
  local blocking = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
  retry = tonumber(blocking[2]) + window - now
end
local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local reset = 0
if newest[2] then reset = tonumber(newest[2]) + window - now end
return {allowed, limit - count, retry, reset}
"""


@dataclass(frozen=True, slots=True)
class RateStatus:
    """One request's place in its key's window."""

    allowed: bool
    limit: int
    remaining: int
    # Until the window is empty again, i.e. the full limit is back (OpenAI's meaning of "reset").
    reset_s: float
    # Until one more request would be allowed; 0 while requests are allowed.
    retry_after_s: float

    def headers(self) -> dict[str, str]:
        """The OpenAI-style `x-ratelimit-*-requests` headers."""
        return {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(max(0, self.remaining)),
            "x-ratelimit-reset-requests": openai_duration(self.reset_s),
        }


def openai_duration(seconds: float) -> str:
    """A duration as OpenAI writes it in rate-limit headers: `20ms`, `1.5s`, `6m0s`."""
    ms = max(0, round(seconds * 1000))
    if ms < 1000:
        return f"{ms}ms"
    minutes, rest = divmod(ms, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


class RateLimiter(Protocol):
    def hit(self, bucket: str, limit: int) -> RateStatus:
        """Count one request against `bucket` if it fits under `limit` per window."""
        ...

    async def hit_async(self, bucket: str, limit: int) -> RateStatus:
        """`hit`, awaited on the event loop."""
        ...


class LocalRateLimiter:
    """The sliding-window log in this process's memory: one log per key, at most `limit` entries each."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, bucket: str, limit: int) -> RateStatus:
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault(bucket, deque())
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            allowed = len(hits) < limit
            if allowed:
                hits.append(now)
            count = len(hits)
            # The entry whose expiry frees a slot (the limit may have been lowered below the count).
            retry = hits[count - limit] + self.window_s - now if count >= limit else 0.0
            reset = hits[-1] + self.window_s - now if hits else 0.0
        return RateStatus(allowed, limit, limit - count, reset, retry)

    async def hit_async(self, bucket: str, limit: int) -> RateStatus:
        return self.hit(bucket, limit)  # memory only: nothing to wait for


# How the limiter's Redis clients connect: every API request waits on them, so they fail fast (to the
# in-process log) rather than retry.
_CLIENT_OPTIONS: dict[str, Any] = {
    "socket_timeout": 1,
    "socket_connect_timeout": 1,
    "health_check_interval": 30,
}


class RedisRateLimiter:
    """The sliding-window log in Redis, shared by every API process; the local log while Redis is down.

    `hit` blocks on a `redis.Redis` client; `hit_async` awaits a `redis.asyncio` client for `url` (one per
    event loop: its connections belong to the loop that opened them), or without a `url` runs `hit` in
    the threadpool.
    """

    def __init__(
        self,
        client: redis.Redis,
        fallback: LocalRateLimiter,
        window_s: float = WINDOW_S,
        *,
        url: str | None = None,
    ) -> None:
        self.window_ms = round(window_s * 1000)
        self.fallback = fallback
        self._script = client.register_script(_SLIDING_WINDOW_LUA)
        self._url = url
        self._async_script: tuple[asyncio.AbstractEventLoop, AsyncScript] | None = None
        self._redis_down_until = 0.0

    def _args(self, limit: int) -> list[int | str]:
        return [limit, self.window_ms, secrets.token_hex(6)]

    def _failed(self, exc: redis.RedisError) -> None:
        log.warning("rate limit: Redis failed (%s); limiting in this process for %s s", exc, REDIS_RETRY_S)
        self._redis_down_until = time.monotonic() + REDIS_RETRY_S

    def hit(self, bucket: str, limit: int) -> RateStatus:
        if time.monotonic() < self._redis_down_until:
            return self.fallback.hit(bucket, limit)
        try:
            reply = self._script(keys=[_redis_key(bucket)], args=self._args(limit))
        except redis.RedisError as exc:
            self._failed(exc)
            return self.fallback.hit(bucket, limit)
        return _status(limit, reply)

    async def hit_async(self, bucket: str, limit: int) -> RateStatus:
        if self._url is None:
            return await run_in_threadpool(self.hit, bucket, limit)
        if time.monotonic() < self._redis_down_until:
            return self.fallback.hit(bucket, limit)
        try:
            reply = await self._script_for_loop()(keys=[_redis_key(bucket)], args=self._args(limit))
        except redis.RedisError as exc:
            self._failed(exc)
            return self.fallback.hit(bucket, limit)
        return _status(limit, reply)

    def _script_for_loop(self) -> AsyncScript:
        loop = asyncio.get_running_loop()
        if self._async_script is None or self._async_script[0] is not loop:
            assert self._url is not None
            retry = AsyncRetry(NoBackoff(), 0)
            client = redis.asyncio.Redis.from_url(self._url, retry=retry, **_CLIENT_OPTIONS)
            self._async_script = (loop, client.register_script(_SLIDING_WINDOW_LUA))
        return self._async_script[1]


def _redis_key(bucket: str) -> str:
    return f"kinema:ratelimit:{bucket}"


def _status(limit: int, reply: Any) -> RateStatus:
    allowed, remaining, retry_ms, reset_ms = reply
    return RateStatus(bool(allowed), limit, int(remaining), reset_ms / 1000, retry_ms / 1000)


@lru_cache
def get_rate_limiter() -> RateLimiter:
    """Redis-backed when KINEMA_REDIS_URL is set, else in this process."""
    url = get_settings().redis_url
    if not url:
        return LocalRateLimiter()
    client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **_CLIENT_OPTIONS)
    return RedisRateLimiter(client, LocalRateLimiter(), url=url)


async def enforce_request_rate(request: Request, key: ApiKey) -> None:
    """Count this request against its key; 429 when over. Keys with no limit are not counted."""
    limit = limits_of(key, get_settings()).rate_limit_rpm
    if limit <= 0:
        return
    status = await get_rate_limiter().hit_async(key.id, limit)
    setattr(request.state, STATE_KEY, status)
    if not status.allowed:
        raise RateLimited(
            f"Rate limit reached: {limit} requests per minute for this key. "
            f"Retry in {status.retry_after_s:.1f} s.",
            code="rate_limit_exceeded",
            retry_after_s=status.retry_after_s,
            headers=status.headers(),
        )
