"""Delivering webhooks over real HTTP: signatures receivers can verify, retries, 410, SSRF at send time.

The delivery function runs in-process here (the Celery task only wraps it); the receiver is a real
HTTP server on 127.0.0.1. tests/e2e/test_webhooks.py runs the same through real worker processes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from openai import OpenAI
from sqlalchemy import select, update
from standardwebhooks import Webhook, WebhookVerificationError

from app.config import get_settings
from app.db import utcnow
from app.jobs.service import mark_failed
from app.webhooks.delivery import RESPONSE_BODY_LIMIT, deliver, sweep
from app.webhooks.models import WebhookDelivery
from tests.webhooks.receiver import Receiver, receiving


def _endpoint(client: Any, headers: dict[str, str], url: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/v1/webhooks", json={"url": url, **fields}, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _failed_job_delivery(
    db_session: Any, make_job: Any, row: Any, **job_fields: Any
) -> tuple[Any, WebhookDelivery]:
    """A job that just failed, and its (first) delivery row."""
    job = make_job(row, **job_fields)
    assert mark_failed(db_session, job.id, code="generation_failed", message="boom")
    delivery = db_session.scalar(select(WebhookDelivery).where(WebhookDelivery.job_id == job.id))
    assert delivery is not None
    return job, delivery


def _deliver_until_done(db_session: Any, delivery_id: str, timeout: float = 10) -> str:
    """Run the delivery task's body as its retries come due, as the worker would."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = deliver(db_session, delivery_id, get_settings())
        if status in ("succeeded", "failed"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"delivery {delivery_id} still pending after {timeout} s")


def _log(client: Any, headers: dict[str, str], endpoint_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/v1/webhooks/{endpoint_id}/deliveries", headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def test_receivers_verify_the_signature_with_standardwebhooks_and_the_openai_sdk(
    client: Any, db_session: Any, auth: tuple[Any, dict[str, str]], make_job: Any, receiver: Receiver
) -> None:
    row, headers = auth
    endpoint = _endpoint(client, headers, f"{receiver.url}/hooks/kinema")
    job, delivery = _failed_job_delivery(db_session, make_job, row)
    assert deliver(db_session, delivery.id, get_settings()) == "succeeded"

    [request] = receiver.wait_for(1)
    assert request.path == "/hooks/kinema"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == delivery.event_id
    # What a receiver written against the Standard Webhooks library does:
    event = Webhook(endpoint["secret"]).verify(request.body, request.headers)
    assert event["type"] == "video.failed" and event["data"]["id"] == job.id
    assert event["data"]["error"] == {"code": "generation_failed", "message": "boom"}
    # ... and one written against the openai SDK:
    unwrapped = OpenAI(api_key="unused").webhooks.unwrap(
        request.body, request.headers, secret=endpoint["secret"]
    )
    assert unwrapped.type == "video.failed"  # type: ignore[comparison-overlap]
    assert unwrapped.id == delivery.event_id
    # A wrong secret, or a body changed in transit, does not verify.
    other = client.post("/v1/webhooks", json={"url": receiver.url}, headers=headers).json()["secret"]
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint["secret"]).verify(request.body.replace(b"boom", b"fine"), request.headers)

    [logged] = _log(client, headers, endpoint["id"])
    assert logged["status"] == "succeeded" and logged["event_type"] == "video.failed"
    assert logged["event_id"] == delivery.event_id and logged["job_id"] == job.id
    [attempt] = logged["attempts"]
    assert attempt["status_code"] == 200 and attempt["response_body"] == "ok" and attempt["error"] is None
    assert attempt["latency_ms"] >= 0 and attempt["number"] == 1


def test_a_receiver_that_fails_twice_then_succeeds_gets_three_attempts_logged(
    client: Any, db_session: Any, auth: tuple[Any, dict[str, str]], make_job: Any
) -> None:
    row, headers = auth
    with receiving([500, 503], reply="x" * (RESPONSE_BODY_LIMIT + 500)) as flaky:
        endpoint = _endpoint(client, headers, flaky.url)
        _, delivery = _failed_job_delivery(db_session, make_job, row)
        assert deliver(db_session, delivery.id, get_settings()) == "pending"
        # Not due yet: the next attempt waits for the retry schedule (0.2 s in tests).
        assert deliver(db_session, delivery.id, get_settings()) is None
        assert _deliver_until_done(db_session, delivery.id) == "succeeded"
        requests = flaky.wait_for(3)
    assert len(requests) == 3
    # Every attempt carries the same webhook-id, so the receiver can drop duplicates.
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    [logged] = _log(client, headers, endpoint["id"])
    assert logged["status"] == "succeeded" and logged["attempt_count"] == 3
    assert [a["status_code"] for a in logged["attempts"]] == [500, 503, 200]
    assert [a["number"] for a in logged["attempts"]] == [1, 2, 3]
    assert len(logged["attempts"][0]["response_body"]) == RESPONSE_BODY_LIMIT  # truncated
    assert logged["last_error"] is None and logged["delivered_at"] is not None


def test_retries_run_out_and_the_delivery_fails(
    client: Any, db_session: Any, auth: tuple[Any, dict[str, str]], make_job: Any
) -> None:
    row, headers = auth
    with receiving(then=500) as broken:
        endpoint = _endpoint(client, headers, broken.url)
        _, delivery = _failed_job_delivery(db_session, make_job, row)
        assert _deliver_until_done(db_session, delivery.id) == "failed"
    [logged] = _log(client, headers, endpoint["id"])
    # The first attempt and one per entry of the retry schedule (three in tests).
    assert [a["status_code"] for a in logged["attempts"]] == [500] * 4
    assert "No retries left" in logged["last_error"] and logged["next_attempt_at"] is None


def test_410_disables_the_endpoint(
    client: Any, db_session: Any, auth: tuple[Any, dict[str, str]], make_job: Any
) -> None:
    row, headers = auth
    with receiving([410]) as gone:
        endpoint = _endpoint(client, headers, gone.url)
        _, delivery = _failed_job_delivery(db_session, make_job, row)
        assert deliver(db_session, delivery.id, get_settings()) == "failed"
        after = client.get(f"/v1/webhooks/{endpoint['id']}", headers=headers).json()
        assert after["enabled"] is False and "410" in after["disabled_reason"]
        # No more events go there until it is enabled again.
        assert mark_failed(db_session, make_job(row).id, code="internal_error", message="x")
        assert len(_log(client, headers, endpoint["id"])) == 1
        # A redelivery while disabled is refused; after re-enabling it goes out.
        refused = client.post(
            f"/v1/webhooks/{endpoint['id']}/deliveries/{delivery.id}/redeliver", headers=headers
        )
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "endpoint_disabled"
        client.patch(f"/v1/webhooks/{endpoint['id']}", json={"enabled": True}, headers=headers)
        again = client.post(
            f"/v1/webhooks/{endpoint['id']}/deliveries/{delivery.id}/redeliver", headers=headers
        )
        assert again.status_code == 202, again.text
        assert deliver(db_session, delivery.id, get_settings()) == "succeeded"
        assert len(gone.wait_for(2)) == 2
    [logged] = _log(client, headers, endpoint["id"])
    assert [a["status_code"] for a in logged["attempts"]] == [410, 200]


def test_redirects_are_not_followed(
    client: Any,
    db_session: Any,
    auth: tuple[Any, dict[str, str]],
    make_job: Any,
    configure: Callable[..., None],
) -> None:
    configure(webhook_retry_schedule_s="")
    row, headers = auth
    with receiving([302]) as redirecting:
        endpoint = _endpoint(client, headers, redirecting.url)
        _, delivery = _failed_job_delivery(db_session, make_job, row)
        assert deliver(db_session, delivery.id, get_settings()) == "failed"
        assert [r.path for r in redirecting.received] == ["/"]  # never the redirect's target
    [logged] = _log(client, headers, endpoint["id"])
    assert logged["attempts"][0]["status_code"] == 302


def test_a_slow_receiver_times_out(
    client: Any,
    db_session: Any,
    auth: tuple[Any, dict[str, str]],
    make_job: Any,
    configure: Callable[..., None],
) -> None:
    configure(webhook_timeout_s="0.3", webhook_retry_schedule_s="")
    row, headers = auth
    with receiving(delay_s=1.5) as slow:
        endpoint = _endpoint(client, headers, slow.url)
        _, delivery = _failed_job_delivery(db_session, make_job, row)
        started = time.monotonic()
        assert deliver(db_session, delivery.id, get_settings()) == "failed"
        assert time.monotonic() - started < 1.2
    [logged] = _log(client, headers, endpoint["id"])
    attempt = logged["attempts"][0]
    assert attempt["status_code"] is None and attempt["error"] == "No answer within 0.3 s."


def test_a_private_address_is_refused_again_at_delivery(
    client: Any,
    db_session: Any,
    auth: tuple[Any, dict[str, str]],
    make_job: Any,
    receiver: Receiver,
    configure: Callable[..., None],
) -> None:
    row, headers = auth
    # Registered while private targets were allowed; the deployment then turned that off.
    endpoint = _endpoint(client, headers, receiver.url)
    _, delivery = _failed_job_delivery(db_session, make_job, row)
    configure(webhook_allow_private_targets="false")
    assert deliver(db_session, delivery.id, get_settings()) == "failed"
    assert receiver.received == []
    [logged] = _log(client, headers, endpoint["id"])
    assert logged["last_error"].startswith(
        "Refused: The host '127.0.0.1' resolves to 127.0.0.1, a loopback address"
    )
    assert logged["attempts"][0]["error"] == logged["last_error"]


def test_rotation_can_keep_the_old_secret_valid_for_a_while(
    client: Any, db_session: Any, auth: tuple[Any, dict[str, str]], make_job: Any, receiver: Receiver
) -> None:
    row, headers = auth
    endpoint = _endpoint(client, headers, receiver.url)
    rotated = client.post(
        f"/v1/webhooks/{endpoint['id']}/rotate_secret",
        json={"keep_old_secret_active_for_24_hours": True},
        headers=headers,
    ).json()
    _, delivery = _failed_job_delivery(db_session, make_job, row)
    assert deliver(db_session, delivery.id, get_settings()) == "succeeded"
    [request] = receiver.wait_for(1)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (endpoint["secret"], rotated["secret"]):
        Webhook(secret).verify(request.body, request.headers)
        OpenAI(api_key="unused").webhooks.verify_signature(request.body, request.headers, secret=secret)

    # A plain rotation drops the old secret at once.
    newest = client.post(f"/v1/webhooks/{endpoint['id']}/rotate_secret", headers=headers).json()["secret"]
    _, second = _failed_job_delivery(db_session, make_job, row)
    assert deliver(db_session, second.id, get_settings()) == "succeeded"
    latest = receiver.wait_for(2)[1]
    assert len(latest.headers["webhook-signature"].split(" ")) == 1
    Webhook(newest).verify(latest.body, latest.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(rotated["secret"]).verify(latest.body, latest.headers)


def test_per_request_webhook_url_is_signed_with_the_keys_secret_and_logged_under_default(
    client: Any, db_session: Any, auth: tuple[Any, dict[str, str]], receiver: Receiver
) -> None:
    _, headers = auth
    submitted = client.post(
        "/generate",
        json={"prompt": "a red ball", "duration": 1, "webhook_url": f"{receiver.url}/job"},
        headers=headers,
    )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    assert mark_failed(db_session, job_id, code="internal_error", message="x")
    delivery = db_session.scalar(select(WebhookDelivery).where(WebhookDelivery.job_id == job_id))
    assert deliver(db_session, delivery.id, get_settings()) == "succeeded"
    [request] = receiver.wait_for(1)
    assert request.path == "/job"
    secret = client.get("/v1/webhooks/default/secret", headers=headers).json()["secret"]
    assert Webhook(secret).verify(request.body, request.headers)["data"]["id"] == job_id
    [logged] = _log(client, headers, "default")
    assert logged["endpoint_id"] is None and logged["url"] == f"{receiver.url}/job"
    assert logged["status"] == "succeeded"


def test_manual_redelivery_sends_the_same_event_again(
    client: Any, db_session: Any, auth: tuple[Any, dict[str, str]], make_job: Any, receiver: Receiver
) -> None:
    row, headers = auth
    endpoint = _endpoint(client, headers, receiver.url)
    _, delivery = _failed_job_delivery(db_session, make_job, row)
    assert deliver(db_session, delivery.id, get_settings()) == "succeeded"
    # Nothing left to do for a finished delivery until someone asks.
    assert deliver(db_session, delivery.id, get_settings()) is None
    response = client.post(
        f"/v1/webhooks/{endpoint['id']}/deliveries/{delivery.id}/redeliver", headers=headers
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending"
    assert deliver(db_session, delivery.id, get_settings()) == "succeeded"
    first, second = receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] and first.body == second.body
    [logged] = _log(client, headers, endpoint["id"])
    assert logged["attempt_count"] == 2
    missing = client.post(f"/v1/webhooks/{endpoint['id']}/deliveries/msg_nope/redeliver", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "delivery_id"


def test_the_sweeper_resends_lost_deliveries_but_not_those_in_flight_or_not_due(
    client: Any, db_session: Any, auth: tuple[Any, dict[str, str]], make_job: Any, receiver: Receiver
) -> None:
    row, headers = auth
    _endpoint(client, headers, receiver.url)
    rows = [_failed_job_delivery(db_session, make_job, row)[1] for _ in range(4)]
    lost, in_flight, not_due, fresh = (d.id for d in rows)
    now = utcnow()
    long_ago = now - timedelta(seconds=get_settings().webhook_redispatch_after_s + 5)
    for delivery_id, values in (
        (lost, {"dispatched_at": long_ago}),
        (in_flight, {"dispatched_at": long_ago, "locked_until": now + timedelta(seconds=30)}),
        (not_due, {"dispatched_at": None, "next_attempt_at": now + timedelta(hours=2)}),
    ):
        db_session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values))
    db_session.commit()
    # `fresh` was sent a moment ago (its task is presumably still on its way): left alone.
    sent = sweep(db_session, get_settings())
    assert lost in sent and in_flight not in sent and not_due not in sent and fresh not in sent
    # Sent again just now: the next sweep leaves it alone too.
    assert lost not in sweep(db_session, get_settings())
    assert deliver(db_session, lost, get_settings()) == "succeeded"
    assert json.loads(receiver.wait_for(1)[0].body)["type"] == "video.failed"


def test_a_host_that_does_not_resolve_is_retried_not_given_up(
    client: Any, db_session: Any, auth: tuple[Any, dict[str, str]], make_job: Any
) -> None:
    row, headers = auth
    # Registration refuses such a URL; a name can stop resolving later, and may come back.
    refused = client.post("/v1/webhooks", json={"url": "http://hook.invalid/"}, headers=headers)
    assert refused.status_code == 400 and "does not resolve" in refused.json()["error"]["message"]
    _, delivery = _failed_job_delivery(db_session, make_job, row, webhook_url="http://hook.invalid/")
    assert deliver(db_session, delivery.id, get_settings()) == "pending"
    [logged] = _log(client, headers, "default")
    assert logged["status"] == "pending" and "does not resolve" in logged["attempts"][0]["error"]
    assert _deliver_until_done(db_session, delivery.id) == "failed"
