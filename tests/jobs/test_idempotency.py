"""Idempotency-Key on POST /generate: a retry gets the first job back; a reused key with a new body, or
a malformed key, is refused; duplicates racing each other over real HTTP make exactly one job."""

from __future__ import annotations

import base64
import json
import threading
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from app.db import session_scope, utcnow
from app.jobs.models import IdempotencyKey, Job
from tests.jobs.served import committed_key, served_app

BODY = {"prompt": "a red ball rolling across a wooden table", "duration": 2, "seed": 7}


def _queued(redis_client: Any, settings_env: dict[str, str]) -> int:
    return int(redis_client.llen(settings_env["KINEMA_QUEUE_NAME"]))


def _jobs_of(db_session: Any, key_id: str) -> int:
    return int(db_session.scalar(select(func.count()).select_from(Job).where(Job.api_key_id == key_id)))


def _task_job_id(raw: bytes) -> str:
    """The job id a Celery message on the Redis queue carries (its body is base64 JSON: args first)."""
    body = json.loads(base64.b64decode(json.loads(raw)["body"]))
    return str(body[0][0])


def _post(client: Any, key: str, body: Any, idempotency_key: str | None) -> Any:
    headers = {"Authorization": f"Bearer {key}"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return client.post("/generate", headers=headers, json=body)


def test_same_key_and_body_replays_the_first_job(
    client: Any, make_key: Any, db_session: Any, redis_client: Any, settings_env: dict[str, str]
) -> None:
    row, key = make_key()
    before = _queued(redis_client, settings_env)
    first = _post(client, key, BODY, "order-1234")
    assert first.status_code == 202, first.text
    assert "idempotent-replayed" not in first.headers
    # The same request again, its fields in another order: the same job, said to be a replay.
    again = _post(client, key, dict(reversed(list(BODY.items()))), "order-1234")
    assert again.status_code == 202, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    assert again.json()["parameters"] == first.json()["parameters"]
    assert _jobs_of(db_session, row.id) == 1
    assert _queued(redis_client, settings_env) == before + 1
    # Without the header every POST is a new job.
    assert _post(client, key, BODY, None).json()["id"] != first.json()["id"]


def test_same_key_with_another_body_is_409_naming_the_header(
    client: Any, make_key: Any, db_session: Any, redis_client: Any, settings_env: dict[str, str]
) -> None:
    row, key = make_key()
    assert _post(client, key, BODY, "k-1").status_code == 202
    queued = _queued(redis_client, settings_env)
    response = _post(client, key, {**BODY, "seed": 8}, "k-1")
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["param"] == "Idempotency-Key" and error["code"] == "idempotency_key_reused"
    assert error["type"] == "invalid_request_error"
    assert _jobs_of(db_session, row.id) == 1
    assert _queued(redis_client, settings_env) == queued


def test_keys_belong_to_the_api_key_that_sent_them(client: Any, make_key: Any) -> None:
    _, alice = make_key("alice")
    _, bob = make_key("bob")
    first = _post(client, alice, BODY, "shared-key")
    other = _post(client, bob, BODY, "shared-key")
    assert other.status_code == 202 and "idempotent-replayed" not in other.headers
    assert other.json()["id"] != first.json()["id"]


def test_an_expired_key_makes_a_new_job(client: Any, make_key: Any, db_session: Any) -> None:
    row, key = make_key()
    first = _post(client, key, BODY, "daily-report")
    stored = db_session.get(IdempotencyKey, (row.id, "daily-report"))
    # The default window is 24 h.
    assert stored.expires_at - stored.created_at == timedelta(hours=24)
    db_session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.api_key_id == row.id)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    db_session.commit()
    # Even a different body is accepted once the key expired: it is a new request.
    later = _post(client, key, {**BODY, "seed": 9}, "daily-report")
    assert later.status_code == 202 and "idempotent-replayed" not in later.headers
    assert later.json()["id"] != first.json()["id"]
    replay = _post(client, key, {**BODY, "seed": 9}, "daily-report")
    assert replay.headers["idempotent-replayed"] == "true" and replay.json()["id"] == later.json()["id"]


@pytest.mark.parametrize("value", ["", "x" * 256, "caf\u00e9", "tab\there"])
def test_malformed_key_is_400_naming_the_header(
    client: Any, make_key: Any, db_session: Any, value: str
) -> None:
    row, key = make_key()
    response = client.post(
        "/generate",
        headers={"Authorization": f"Bearer {key}", "Idempotency-Key": value.encode("latin-1")},
        json=BODY,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "Idempotency-Key"
    assert _jobs_of(db_session, row.id) == 0


def test_longest_allowed_key_works(client: Any, make_key: Any) -> None:
    _, key = make_key()
    longest = "~" + "K" * 253 + "!"
    assert len(longest) == 255
    assert _post(client, key, BODY, longest).status_code == 202
    assert _post(client, key, BODY, longest).headers["idempotent-replayed"] == "true"


def test_key_of_a_job_the_queue_refused_is_released(
    client: Any, make_key: Any, db_session: Any, settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import clear_caches, free_port

    _, key = make_key()
    monkeypatch.setenv("KINEMA_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    clear_caches()
    refused = _post(client, key, BODY, "retry-me")
    assert refused.status_code == 503
    monkeypatch.setenv("KINEMA_BROKER_URL", settings_env["KINEMA_BROKER_URL"])
    clear_caches()
    # The retry the 503 invites makes a job that runs, not a replay of the failed one.
    retried = _post(client, key, BODY, "retry-me")
    assert retried.status_code == 202 and "idempotent-replayed" not in retried.headers
    assert retried.json()["status"] == "queued"


def test_concurrent_duplicates_over_http_make_one_job_and_one_task(
    settings_env: dict[str, str], redis_client: Any
) -> None:
    queue = settings_env["KINEMA_QUEUE_NAME"]
    with committed_key("idempotency-race") as (key_id, key), served_app() as base_url:
        barrier = threading.Barrier(20)
        responses: list[httpx.Response] = []
        lock = threading.Lock()

        def submit() -> None:
            with httpx.Client(base_url=base_url, timeout=60) as http:
                barrier.wait()
                response = http.post(
                    "/generate",
                    headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "same-click"},
                    json=BODY,
                )
            with lock:
                responses.append(response)

        threads = [threading.Thread(target=submit) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        assert len(responses) == 20
        assert {r.status_code for r in responses} == {202}, [
            r.text for r in responses if r.status_code != 202
        ]
        ids = {r.json()["id"] for r in responses}
        assert len(ids) == 1
        job_id = ids.pop()
        assert sum(1 for r in responses if "idempotent-replayed" not in r.headers) == 1
        with session_scope() as session:
            assert session.scalar(select(func.count()).where(Job.api_key_id == key_id)) == 1
        tasks = [raw for raw in redis_client.lrange(queue, 0, -1) if _task_job_id(raw) == job_id]
        assert len(tasks) == 1
        redis_client.lrem(queue, 0, tasks[0])  # nothing will run it: leave the shared queue as it was
