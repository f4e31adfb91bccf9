"""Requests per minute per key: 429 with Retry-After, and the x-ratelimit headers on every response."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Any

import pytest
import redis

from app.config import get_settings
from app.limits.rate import (
    LocalRateLimiter,
    RateStatus,
    RedisRateLimiter,
    get_rate_limiter,
    openai_duration,
)
from tests.conftest import REDIS_URL, free_port

# OpenAI writes durations as `20ms`, `59.5s`, `1m0s`.
DURATION = re.compile(r"^(\d+ms|\d+(\.\d+)?s|\d+m\d+(\.\d+)?s)$")


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _rate_headers(response: Any) -> tuple[str, str, str]:
    headers = response.headers
    return (
        headers["x-ratelimit-limit-requests"],
        headers["x-ratelimit-remaining-requests"],
        headers["x-ratelimit-reset-requests"],
    )


def test_over_the_rpm_limit_is_429_with_retry_after_and_headers(client: Any, make_key: Any) -> None:
    _, key = make_key(rate_limit_rpm=3)
    _, other = make_key(rate_limit_rpm=3)
    for remaining in ("2", "1", "0"):
        response = client.get("/jobs", headers=_auth(key))
        assert response.status_code == 200, response.text
        limit, left, reset = _rate_headers(response)
        assert (limit, left) == ("3", remaining)
        assert DURATION.match(reset), reset
    refused = client.get("/jobs", headers=_auth(key))
    assert refused.status_code == 429
    assert refused.json()["error"] == {
        "message": refused.json()["error"]["message"],
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert "3 requests per minute" in refused.json()["error"]["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert 0 < int(refused.headers["retry-after-ms"]) <= 60_000
    assert _rate_headers(refused)[:2] == ("3", "0")
    # Every endpoint shares the key's window; other keys have windows of their own.
    assert client.post("/generate", headers=_auth(key), json={"prompt": "a cat"}).status_code == 429
    assert client.get("/jobs", headers=_auth(other)).status_code == 200


def test_headers_appear_on_ordinary_responses_from_the_default_limit(
    client: Any, make_key: Any, make_job: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KINEMA_DEFAULT_RATE_LIMIT_RPM", "100")
    get_settings.cache_clear()
    row, key = make_key()
    submitted = client.post("/generate", headers=_auth(key), json={"prompt": "a cat", "duration": 1})
    assert submitted.status_code == 202
    assert _rate_headers(submitted)[:2] == ("100", "99")
    polled = client.get(f"/jobs/{submitted.json()['id']}", headers=_auth(key))
    assert polled.status_code == 200 and _rate_headers(polled)[:2] == ("100", "98")
    assert _rate_headers(client.get("/v1/usage", headers=_auth(key)))[:2] == ("100", "97")
    done = make_job(row, status="succeeded", video_key="videos/x.mp4", thumbnail_key="videos/x.jpg")
    redirect = client.get(f"/jobs/{done.id}/video", headers=_auth(key), follow_redirects=False)
    assert redirect.status_code == 302 and _rate_headers(redirect)[:2] == ("100", "96")
    # Errors after authentication carry them too; a request that never authenticated does not.
    missing = client.get("/jobs/video_nope", headers=_auth(key))
    assert missing.status_code == 404 and _rate_headers(missing)[:2] == ("100", "95")
    invalid = client.post("/generate", headers=_auth(key), json={"prompt": ""})
    assert invalid.status_code == 400 and _rate_headers(invalid)[:2] == ("100", "94")
    anonymous = client.get("/jobs")
    assert anonymous.status_code == 401 and "x-ratelimit-limit-requests" not in anonymous.headers


def test_a_key_with_limit_0_is_unlimited_and_not_counted(client: Any, make_key: Any) -> None:
    _, key = make_key(rate_limit_rpm=0)
    for _ in range(5):
        response = client.get("/jobs", headers=_auth(key))
        assert response.status_code == 200 and "x-ratelimit-limit-requests" not in response.headers


def test_without_redis_each_process_limits_in_memory(
    client: Any, make_key: Any, monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis
) -> None:
    monkeypatch.setenv("KINEMA_REDIS_URL", "")
    get_settings.cache_clear()
    get_rate_limiter.cache_clear()
    row, key = make_key(rate_limit_rpm=2)
    assert [client.get("/jobs", headers=_auth(key)).status_code for _ in range(3)] == [200, 200, 429]
    assert isinstance(get_rate_limiter(), LocalRateLimiter)
    assert not redis_client.exists(f"kinema:ratelimit:{row.id}")


def test_api_processes_sharing_redis_never_let_more_than_the_limit_through() -> None:
    # Two limiters on two connections stand for two API processes; 8 threads race for 20 slots.
    bucket = f"test-{time.monotonic_ns()}"
    limiters = [RedisRateLimiter(redis.Redis.from_url(REDIS_URL), LocalRateLimiter()) for _ in range(2)]
    allowed: list[bool] = []
    lock = threading.Lock()

    def hammer(limiter: RedisRateLimiter) -> None:
        for _ in range(10):
            status = limiter.hit(bucket, 20)
            with lock:
                allowed.append(status.allowed)

    threads = [threading.Thread(target=hammer, args=(limiters[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(allowed) == 80 and allowed.count(True) == 20


@pytest.mark.parametrize("make_limiter", ["local", "redis"])
def test_the_window_slides_a_slot_frees_when_its_request_is_window_old(make_limiter: str) -> None:
    window = 1.0
    limiter: LocalRateLimiter | RedisRateLimiter = (
        LocalRateLimiter(window_s=window)
        if make_limiter == "local"
        else RedisRateLimiter(redis.Redis.from_url(REDIS_URL), LocalRateLimiter(), window_s=window)
    )
    bucket = f"test-{time.monotonic_ns()}"
    first = limiter.hit(bucket, 2)
    time.sleep(0.3)
    second = limiter.hit(bucket, 2)
    refused = limiter.hit(bucket, 2)
    assert (first.allowed, second.allowed, refused.allowed) == (True, True, False)
    assert (first.remaining, second.remaining, refused.remaining) == (1, 0, 0)
    # The first request frees its slot after ~0.7 s more; the window is empty after ~1 s.
    assert 0.5 < refused.retry_after_s <= 0.75 and 0.8 < refused.reset_s <= 1.0
    time.sleep(refused.retry_after_s + 0.05)
    again = limiter.hit(bucket, 2)
    assert again.allowed and again.remaining == 0
    assert not limiter.hit(bucket, 2).allowed


def test_redis_down_falls_back_to_the_in_process_limit(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KINEMA_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    get_settings.cache_clear()
    get_rate_limiter.cache_clear()
    limiter = get_rate_limiter()
    started = time.monotonic()
    results = [limiter.hit("down", 2).allowed for _ in range(3)]
    assert results == [True, True, False]
    # No retries, and Redis is skipped for a while after a failure: requests are not held up by it.
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.02, "20ms"), (1, "1s"), (59.5, "59.5s"), (60, "1m0s"), (360, "6m0s"), (61.25, "1m1.25s")],
)
def test_reset_durations_are_written_as_openai_writes_them(seconds: float, text: str) -> None:
    assert openai_duration(seconds) == text


def test_counts_on_the_event_loop_and_blocking_ones_share_one_window() -> None:
    # The API counts on its event loop (redis.asyncio); other callers block on redis.Redis.
    bucket = f"test-{time.monotonic_ns()}"
    limiter = RedisRateLimiter(redis.Redis.from_url(REDIS_URL), LocalRateLimiter(), url=REDIS_URL)

    async def two() -> list[RateStatus]:
        return [await limiter.hit_async(bucket, 3) for _ in range(2)]

    counted = asyncio.run(two())
    blocking = limiter.hit(bucket, 3)
    refused = asyncio.run(two())  # another event loop: a client of its own
    assert [status.remaining for status in counted] == [2, 1] and blocking.remaining == 0
    assert [status.allowed for status in refused] == [False, False]


def test_redis_down_the_event_loop_falls_back_to_the_in_process_limit_at_once(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KINEMA_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    get_settings.cache_clear()
    get_rate_limiter.cache_clear()
    limiter = get_rate_limiter()

    async def three() -> list[bool]:
        return [(await limiter.hit_async("down", 2)).allowed for _ in range(3)]

    started = time.monotonic()
    assert asyncio.run(three()) == [True, True, False]
    assert time.monotonic() - started < 1
