"""The in-process cache of authenticated keys: it saves the key lookup, and a change reaches it."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from sqlalchemy import event, update

from app.api_keys.cache import CHANGES_CHANNEL, KeyCache, get_key_cache
from app.api_keys.models import ApiKey
from app.db import utcnow
from tests.conftest import clear_caches


def _selects_of_api_keys(db_session: Any) -> list[str]:
    """Start recording the SELECTs on api_keys that the test's connection runs."""
    seen: list[str] = []

    @event.listens_for(db_session.get_bind(), "before_cursor_execute")
    def _record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM api_keys" in statement:
            seen.append(statement)

    return seen


def _revoke_behind_the_api(db_session: Any, row: Any) -> None:
    """What another process (or SQL by hand) does: the row changes, this process is not told."""
    db_session.execute(update(ApiKey).where(ApiKey.id == row.id).values(revoked_at=utcnow()))
    db_session.commit()


def _listening() -> None:
    """Wait until the cache listens for changes (it clears itself once then: missed messages)."""
    listener = get_key_cache().listener
    assert listener is not None and listener.subscribed.wait(5)


def test_a_cached_key_is_not_looked_up_again(client: Any, make_key: Any, db_session: Any) -> None:
    _, key = make_key()
    headers = {"Authorization": f"Bearer {key}"}
    _listening()
    assert client.get("/jobs", headers=headers).status_code == 200
    lookups = _selects_of_api_keys(db_session)
    for _ in range(3):
        assert client.get("/jobs", headers=headers).status_code == 200
    assert lookups == []


def test_a_change_announced_on_redis_reaches_the_cache_at_once(
    client: Any, make_key: Any, db_session: Any
) -> None:
    row, key = make_key()
    headers = {"Authorization": f"Bearer {key}"}
    _listening()
    assert client.get("/jobs", headers=headers).status_code == 200  # cached now
    _revoke_behind_the_api(db_session, row)
    assert client.get("/jobs", headers=headers).status_code == 200  # still the cached copy
    from app.config import get_settings

    redis.Redis.from_url(get_settings().redis_url).publish(CHANGES_CHANNEL, "1")  # another API process
    deadline = time.monotonic() + 5
    while client.get("/jobs", headers=headers).status_code != 401:
        assert time.monotonic() < deadline, "the announced revoke never reached the cache"
        time.sleep(0.05)


def test_an_unannounced_change_counts_after_the_ttl(
    client: Any, make_key: Any, db_session: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KINEMA_AUTH_CACHE_TTL_S", "0.5")
    monkeypatch.delenv("KINEMA_REDIS_URL")  # no change messages: only the TTL bounds staleness
    clear_caches()
    row, key = make_key()
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/jobs", headers=headers).status_code == 200
    _revoke_behind_the_api(db_session, row)
    assert client.get("/jobs", headers=headers).status_code == 200
    time.sleep(0.6)
    response = client.get("/jobs", headers=headers)
    assert response.status_code == 401 and response.json()["error"]["code"] == "revoked_api_key"


def test_ttl_zero_turns_the_cache_off(client: Any, make_key: Any, db_session: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("KINEMA_AUTH_CACHE_TTL_S", "0")
    clear_caches()
    row, key = make_key()
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/jobs", headers=headers).status_code == 200
    _revoke_behind_the_api(db_session, row)
    assert client.get("/jobs", headers=headers).status_code == 401


def test_entries_expire_and_the_cache_stays_bounded() -> None:
    now = [0.0]
    cache = KeyCache(ttl_s=2.0, clock=lambda: now[0])
    row = ApiKey(id="key_1", name="k", prefix="p", key_hash="h", scopes="generate read")
    cache.put("hash", row)
    copy = cache.get("hash")
    assert copy is not None and copy is not row and copy.id == "key_1"
    now[0] = 2.0
    assert cache.get("hash") is None
    for i in range(10_001):
        cache.put(f"h{i}", row)
    assert len(cache._entries) <= 10_000
