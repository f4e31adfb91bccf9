"""Concurrent jobs and the monthly quota of video seconds: checked at submit, reported by GET /v1/usage."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.api_keys import service as keys
from app.config import get_settings
from app.db import get_sessionmaker
from app.errors import RateLimited
from app.jobs import runs
from app.jobs.models import Job
from app.jobs.service import new_job_id
from app.limits.service import admit_job, current_period


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _submit(client: Any, key: str, duration: float) -> Any:
    return client.post("/generate", headers=_auth(key), json={"prompt": "a cat", "duration": duration})


def test_over_the_concurrency_limit_is_429_until_a_job_finishes(
    client: Any, make_key: Any, make_job: Any, db_session: Any
) -> None:
    row, key = make_key(max_concurrent_jobs=2, rate_limit_rpm=100)
    other, _ = make_key()
    make_job(other, status="queued")  # another key's jobs do not count
    queued = make_job(row, status="queued")
    make_job(row, status="in_progress")
    make_job(row, status="succeeded")
    refused = _submit(client, key, 1)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "concurrency_limit_exceeded")
    assert "at most 2" in error["message"]
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-limit-requests"] == "100"
    assert refused.headers["x-ratelimit-remaining-requests"] == "99"
    queued.status = "succeeded"
    db_session.commit()
    assert _submit(client, key, 1).status_code == 202
    assert _submit(client, key, 1).status_code == 429


def test_over_the_monthly_quota_is_429_and_usage_shows_why(client: Any, make_key: Any, make_job: Any) -> None:
    row, key = make_key(monthly_quota_s=10, rate_limit_rpm=100)
    last_month = current_period().start - timedelta(days=3)
    make_job(row, status="succeeded", duration_s=9.0, created_at=last_month)  # another period
    make_job(row, status="succeeded", duration_s=3.0)
    make_job(row, status="canceled", duration_s=5.0)  # canceled jobs cost nothing
    assert _submit(client, key, 4).status_code == 202
    refused = _submit(client, key, 4)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "rate_limit_error",
        "quota_exceeded",
        "duration",
    )
    assert "7 s are used or reserved" in error["message"] and "3 s are left" in error["message"]
    period = current_period()
    until_renewal = (period.end - datetime.now(UTC)).total_seconds()
    assert abs(int(refused.headers["retry-after"]) - until_renewal) < 60
    assert refused.headers["x-should-retry"] == "false"
    assert refused.headers["x-ratelimit-limit-requests"] == "100"

    usage = client.get("/v1/usage", headers=_auth(key))
    assert usage.status_code == 200
    body = usage.json()
    assert body["object"] == "usage" and body["key_id"] == row.id
    assert datetime.fromisoformat(body["period_start"]) == period.start
    assert datetime.fromisoformat(body["period_end"]) == period.end
    assert (body["seconds_used"], body["seconds_reserved"]) == (3.0, 4.0)
    assert (body["seconds_limit"], body["seconds_remaining"]) == (10, 3.0)
    assert body["jobs"] == {"queued": 1, "in_progress": 0, "succeeded": 1, "failed": 0, "canceled": 1}
    assert body["running_jobs"] == 1
    assert body["limits"] == {"requests_per_minute": 100, "max_concurrent_jobs": 16, "monthly_quota_s": 10}
    # What is left can still be spent, to the second.
    assert _submit(client, key, 3).status_code == 202
    assert _submit(client, key, 0.5).status_code == 429


def test_a_failed_job_gives_its_seconds_back(client: Any, make_key: Any, db_session: Any) -> None:
    _, key = make_key(monthly_quota_s=5)
    first = _submit(client, key, 4)
    assert first.status_code == 202
    assert _submit(client, key, 2).status_code == 429
    # The worker's path: claim the job, then fail it.
    _, run = runs.claim(db_session, first.json()["id"], worker="test", lease_s=60)
    assert run is not None
    assert runs.fail(db_session, run, code="generation_failed", message="boom")
    usage = client.get("/v1/usage", headers=_auth(key)).json()
    assert (usage["seconds_used"], usage["seconds_reserved"], usage["seconds_remaining"]) == (0.0, 0.0, 5.0)
    assert usage["jobs"]["failed"] == 1
    assert _submit(client, key, 5).status_code == 202


def test_a_succeeded_job_stays_counted(client: Any, make_key: Any, db_session: Any) -> None:
    _, key = make_key(monthly_quota_s=5)
    job_id = _submit(client, key, 4).json()["id"]
    _, run = runs.claim(db_session, job_id, worker="test", lease_s=60)
    assert run is not None and runs.succeed(db_session, run, video_key="v.mp4", thumbnail_key="v.jpg")
    usage = client.get("/v1/usage", headers=_auth(key)).json()
    assert (usage["seconds_used"], usage["seconds_reserved"], usage["seconds_remaining"]) == (4.0, 0.0, 1.0)
    assert _submit(client, key, 2).status_code == 429


def test_defaults_apply_to_keys_without_limits_and_0_means_unlimited(
    client: Any, make_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KINEMA_DEFAULT_MONTHLY_QUOTA_S", "3")
    monkeypatch.setenv("KINEMA_DEFAULT_MAX_CONCURRENT_JOBS", "0")
    get_settings.cache_clear()
    _, default_key = make_key()
    _, unlimited = make_key(monthly_quota_s=0)
    assert _submit(client, default_key, 4).json()["error"]["code"] == "quota_exceeded"
    assert all(_submit(client, unlimited, 4).status_code == 202 for _ in range(3))
    usage = client.get("/v1/usage", headers=_auth(unlimited)).json()
    assert (usage["seconds_limit"], usage["seconds_remaining"], usage["seconds_reserved"]) == (
        None,
        None,
        12.0,
    )
    assert usage["limits"]["max_concurrent_jobs"] is None


@pytest.mark.parametrize("limit", ["max_concurrent_jobs", "monthly_quota_s"])
def test_concurrent_submits_of_one_key_cannot_both_pass_the_check(
    settings_env: dict[str, str], limit: str
) -> None:
    """Two API requests at once, on two real Postgres connections: the key's row lock makes the second
    wait for the first to commit, so it sees the first job and is refused."""
    sessions = get_sessionmaker()
    with sessions() as session:
        created = keys.create_key(session, "race", **{limit: 1})
    key_id = created.row.id
    outcomes: dict[str, str] = {}

    def submit(name: str, delay: float) -> None:
        time.sleep(delay)
        with sessions() as session:
            key = keys.get_key(session, key_id)
            try:
                admit_job(session, key, 1.0, get_settings())
            except RateLimited as exc:
                outcomes[name] = exc.code
                return
            session.add(
                Job(
                    id=new_job_id(),
                    api_key_id=key_id,
                    model="m",
                    prompt="p",
                    duration_s=1.0,
                    width=64,
                    height=64,
                    fps=8,
                    num_frames=8,
                    seed=1,
                    num_inference_steps=1,
                    guidance_scale=1.0,
                )
            )
            time.sleep(0.5)  # the window in which an unlocked check would let the other through
            session.commit()
            outcomes[name] = "admitted"

    threads = [threading.Thread(target=submit, args=(name, delay)) for name, delay in (("a", 0), ("b", 0.15))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = "concurrency_limit_exceeded" if limit == "max_concurrent_jobs" else "quota_exceeded"
    assert outcomes == {"a": "admitted", "b": expected}
    with sessions() as session:
        session.query(Job).filter(Job.api_key_id == key_id).delete()
        session.delete(keys.get_key(session, key_id))
        session.commit()
