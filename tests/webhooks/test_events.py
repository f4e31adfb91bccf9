"""Job state changes write webhook events to the outbox in the same transaction, and only real changes do."""

from __future__ import annotations

import base64
import json
from typing import Any

import redis
from sqlalchemy import select, update

from app.jobs import runs
from app.jobs.models import Job
from app.jobs.service import mark_failed
from app.webhooks.events import record_job_event
from app.webhooks.models import WebhookDelivery
from tests.conftest import REDIS_URL
from tests.webhooks.receiver import Receiver


def _deliveries(db_session: Any, job_id: str) -> list[WebhookDelivery]:
    return list(
        db_session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.job_id == job_id).order_by(WebhookDelivery.id)
        )
    )


def _endpoint(
    client: Any, headers: dict[str, str], url: str, events: list[str] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url}
    if events is not None:
        body["events"] = events
    response = client.post("/v1/webhooks", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_a_run_writes_in_progress_once_and_completed_with_the_job_as_the_api_shows_it(
    client: Any, db_session: Any, auth: tuple[Any, dict[str, str]], make_job: Any, receiver: Receiver
) -> None:
    row, headers = auth
    everything = _endpoint(client, headers, f"{receiver.url}/all", ["video.in_progress", "video.completed"])
    terminal = _endpoint(client, headers, f"{receiver.url}/terminal")
    job = make_job(row)

    _, run = runs.claim(db_session, job.id, worker="w:1", lease_s=60)
    assert run is not None
    started = _deliveries(db_session, job.id)
    # Only the endpoint that opted in hears about the start.
    assert [(d.event_type, d.endpoint_id) for d in started] == [("video.in_progress", everything["id"])]

    # A takeover after a lost worker claims the job again: no second in_progress event.
    db_session.execute(update(Job).where(Job.id == job.id).values(heartbeat_at=None))
    db_session.commit()
    _, takeover = runs.claim(db_session, job.id, worker="w:2", lease_s=60)
    assert takeover is not None
    assert len(_deliveries(db_session, job.id)) == 1

    assert runs.succeed(db_session, takeover, video_key="v.mp4", thumbnail_key="t.jpg", output_frames=16)
    completed = [d for d in _deliveries(db_session, job.id) if d.event_type == "video.completed"]
    assert sorted(d.endpoint_id for d in completed) == sorted([everything["id"], terminal["id"]])
    # One event, two targets: the same `webhook-id` for both.
    assert completed[0].event_id == completed[1].event_id
    envelope = json.loads(completed[0].payload)
    assert envelope["id"] == completed[0].event_id
    assert envelope["object"] == "event" and envelope["type"] == "video.completed"
    assert isinstance(envelope["created_at"], int)
    polled = client.get(f"/jobs/{job.id}", headers=headers).json()
    assert envelope["data"]["id"] == job.id and envelope["data"]["status"] == "succeeded"
    assert {k: v for k, v in envelope["data"].items() if k != "output"} == {
        k: v for k, v in polled.items() if k != "output"
    }
    assert envelope["data"]["output"]["video_url"].endswith(f"/jobs/{job.id}/video")

    # The old run no longer owns the job: its late write changes nothing and writes no event.
    assert not runs.fail(db_session, run, code="internal_error", message="late")
    assert not runs.succeed(db_session, takeover)
    assert len(_deliveries(db_session, job.id)) == 3


def test_failures_write_video_failed_and_per_request_urls_get_terminal_events_only(
    db_session: Any, auth: tuple[Any, dict[str, str]], make_job: Any, receiver: Receiver
) -> None:
    row, _ = auth
    job = make_job(row, webhook_url=f"{receiver.url}/job")
    _, run = runs.claim(db_session, job.id, worker="w:1", lease_s=60)
    assert run is not None
    assert _deliveries(db_session, job.id) == []  # no in_progress for a per-request URL
    assert runs.fail(db_session, run, code="generation_failed", message="boom")
    [failed] = _deliveries(db_session, job.id)
    assert (failed.event_type, failed.endpoint_id, failed.url) == (
        "video.failed",
        None,
        f"{receiver.url}/job",
    )
    assert json.loads(failed.payload)["data"]["error"] == {"code": "generation_failed", "message": "boom"}

    queued = make_job(row, webhook_url=f"{receiver.url}/job")
    assert mark_failed(db_session, queued.id, code="queue_unavailable", message="down")
    assert [d.event_type for d in _deliveries(db_session, queued.id)] == ["video.failed"]
    assert not mark_failed(db_session, queued.id, code="queue_unavailable", message="again")
    assert len(_deliveries(db_session, queued.id)) == 1


def test_disabled_and_other_keys_endpoints_get_nothing(
    client: Any,
    db_session: Any,
    auth: tuple[Any, dict[str, str]],
    make_key: Any,
    make_job: Any,
    receiver: Receiver,
) -> None:
    row, headers = auth
    endpoint = _endpoint(client, headers, receiver.url)
    client.patch(f"/v1/webhooks/{endpoint['id']}", json={"enabled": False}, headers=headers)
    _, other_key = make_key("other")
    _endpoint(client, {"Authorization": f"Bearer {other_key}"}, receiver.url)
    job = make_job(row)
    assert mark_failed(db_session, job.id, code="internal_error", message="x")
    assert _deliveries(db_session, job.id) == []


def test_the_delivery_task_is_sent_only_after_the_commit(
    client: Any,
    db_session: Any,
    auth: tuple[Any, dict[str, str]],
    make_job: Any,
    settings_env: dict[str, str],
) -> None:
    row, headers = auth
    _endpoint(client, headers, "http://127.0.0.1:9/")
    job = make_job(row)
    broker = redis.Redis.from_url(REDIS_URL)
    queue = settings_env["KINEMA_WEBHOOK_QUEUE_NAME"]
    before = broker.llen(queue)
    [delivery_id] = record_job_event(db_session, job.id, "video.failed")
    assert broker.llen(queue) == before  # a worker must never see a task for a row that may not exist
    db_session.commit()
    assert broker.llen(queue) == before + 1
    messages = [json.loads(m) for m in broker.lrange(queue, 0, -1)]
    # Celery's message body: [args, kwargs, options]; the task carries the delivery id only.
    assert any(json.loads(base64.b64decode(m["body"]))[0] == [delivery_id] for m in messages)

    rolled_back = make_job(row)
    record_job_event(db_session, rolled_back.id, "video.failed")
    db_session.rollback()
    make_job(row)  # the next commit does not send the rolled-back row's task either
    assert broker.llen(queue) == before + 1
    broker.delete(queue)
    broker.close()
