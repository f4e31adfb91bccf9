"""Webhooks for real: API, a GPU worker and a webhook worker (with beat) as processes, receivers over HTTP."""

from __future__ import annotations

import base64
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from openai import OpenAI
from standardwebhooks import Webhook

from tests.conftest import REDIS_URL, free_port
from tests.e2e.harness import Process, Service, clean_env, create_key, start, wait_for_job, wait_ready
from tests.webhooks.receiver import receiving

pytestmark = pytest.mark.e2e

JOB = {"prompt": "a red ball", "duration": 1, "resolution": "64x64", "fps": 8, "num_inference_steps": 2}
WEBHOOK_WORKER = ["worker", "--queues", "webhooks", "--concurrency", "4", "--beat"]


@pytest.fixture(scope="module")
def hooks(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A deployment whose generations and webhook deliveries run in separate worker processes."""
    logs = tmp_path_factory.mktemp("webhook-logs")
    port = free_port()
    suffix = uuid.uuid4().hex[:8]
    env = clean_env(
        {
            **service_env,
            "KINEMA_HOME": str(tmp_path_factory.mktemp("webhook-home")),
            "KINEMA_QUEUE_NAME": f"kinema.hooks.{suffix}",
            "KINEMA_WEBHOOK_QUEUE_NAME": f"kinema.hooks.webhooks.{suffix}",
            "KINEMA_WEBHOOK_RETRY_SCHEDULE_S": "0.3,0.3,0.3",
            "KINEMA_WEBHOOK_REDISPATCH_AFTER_S": "1",
            "KINEMA_WEBHOOK_SWEEP_INTERVAL_S": "1",
            "KINEMA_API_BASE_URL": f"http://127.0.0.1:{port}",
        }
    )
    gpu = start("gpu-worker", ["worker", "--queues", "generate", "--concurrency", "1"], env, logs)
    webhooks = start("webhook-worker", WEBHOOK_WORKER, env, logs)
    api = start("api", ["serve", "--port", str(port), "--log-level", "warning"], env, logs)
    service = Service(base_url=f"http://127.0.0.1:{port}", env=env, processes=[gpu, webhooks, api])
    try:
        wait_ready(service.base_url, service.processes)
        yield service
    finally:
        service.stop()


def _endpoint(client: httpx.Client, url: str, events: list[str]) -> dict[str, Any]:
    response = client.post("/v1/webhooks", json={"url": url, "events": events})
    assert response.status_code == 201, response.text
    return dict(response.json())


def _delivery_log(client: httpx.Client, endpoint_id: str, *, timeout: float = 30) -> dict[str, Any]:
    """The endpoint's one delivery, once it is finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = client.get(f"/v1/webhooks/{endpoint_id}/deliveries").json()["data"]
        if data and data[0]["status"] != "pending":
            assert len(data) == 1, data
            return dict(data[0])
        time.sleep(0.1)
    raise AssertionError(f"delivery to {endpoint_id} not finished after {timeout} s")


def test_a_job_sends_signed_events_and_retries_until_the_receiver_answers(hooks: Service) -> None:
    key = create_key(hooks.env, "webhooks-e2e")
    with receiving([500, 503]) as flaky, receiving() as steady, hooks.client(key) as client:
        completed_only = _endpoint(client, flaky.url, ["video.completed"])
        everything = _endpoint(client, f"{steady.url}/all", ["video.in_progress", "video.completed"])
        submitted = client.post("/generate", json={**JOB, "webhook_url": f"{steady.url}/job"})
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        job = wait_for_job(client, job_id).job
        assert job["status"] == "succeeded", (job, hooks.logs())

        received = steady.wait_for(3)
        by_route = {(r.path, json.loads(r.body)["type"]): r for r in received}
        assert set(by_route) == {
            ("/all", "video.in_progress"),
            ("/all", "video.completed"),
            ("/job", "video.completed"),
        }, hooks.logs()
        for (path, _), request in by_route.items():
            secret = (
                everything["secret"]
                if path == "/all"
                else client.get("/v1/webhooks/default/secret").json()["secret"]
            )
            event = Webhook(secret).verify(request.body, request.headers)
            assert event["data"]["id"] == job_id
            unwrapped = OpenAI(api_key="unused").webhooks.unwrap(request.body, request.headers, secret=secret)
            assert unwrapped.id == request.headers["webhook-id"]
        # The completed event carries the job exactly as polling shows it, links included.
        assert (
            json.loads(by_route[("/job", "video.completed")].body)["data"]
            == client.get(f"/jobs/{job_id}").json()
        )

        attempts = flaky.wait_for(3)
        assert len({r.headers["webhook-id"] for r in attempts}) == 1
        Webhook(completed_only["secret"]).verify(attempts[-1].body, attempts[-1].headers)
        logged = _delivery_log(client, completed_only["id"])
        assert logged["status"] == "succeeded" and logged["event_type"] == "video.completed"
        assert [a["status_code"] for a in logged["attempts"]] == [500, 503, 200]
        assert all(a["latency_ms"] >= 0 for a in logged["attempts"])
        time.sleep(1.5)  # beat sweeps every second here: no duplicate deliveries come of it
        assert len(flaky.received) == 3 and len(steady.received) == 3


def _kill(process: Process) -> None:
    os.killpg(process.popen.pid, signal.SIGKILL)
    process.popen.wait()


def test_a_delivery_lost_with_its_worker_still_arrives(hooks: Service, tmp_path: Path) -> None:
    """The webhook worker is killed, the job succeeds, and the delivery task is lost on the way (deleted
    from the broker, as if the process had died between the commit and the send, or Redis had lost it).
    The outbox row survives: a new worker's sweeper sends it again, and the webhook arrives once."""
    key = create_key(hooks.env, "webhooks-lost")
    webhooks = next(p for p in hooks.processes if p.name == "webhook-worker")
    _kill(webhooks)
    broker = redis.Redis.from_url(REDIS_URL)
    queue = hooks.env["KINEMA_WEBHOOK_QUEUE_NAME"]
    with receiving() as receiver, hooks.client(key) as client:
        endpoint = _endpoint(client, receiver.url, ["video.completed"])
        submitted = client.post("/generate", json=JOB)
        job_id = submitted.json()["id"]
        assert wait_for_job(client, job_id).job["status"] == "succeeded", hooks.logs()

        tasks = [json.loads(base64.b64decode(json.loads(m)["body"])) for m in broker.lrange(queue, 0, -1)]
        delivery_id = client.get(f"/v1/webhooks/{endpoint['id']}/deliveries").json()["data"][0]["id"]
        assert [delivery_id] in [args for args, _, _ in tasks]  # the send after the commit happened...
        broker.delete(queue)  # ... and is lost
        time.sleep(1.0)
        assert receiver.received == []

        restarted = start("webhook-worker-2", WEBHOOK_WORKER, hooks.env, tmp_path)
        hooks.processes.append(restarted)
        [request] = receiver.wait_for(1, timeout=60)
        event = Webhook(endpoint["secret"]).verify(request.body, request.headers)
        assert event["type"] == "video.completed" and event["data"]["id"] == job_id
        logged = _delivery_log(client, endpoint["id"])
        assert logged["status"] == "succeeded" and len(logged["attempts"]) == 1
        time.sleep(1.5)
        assert len(receiver.received) == 1

        # While that worker runs, a row whose task was never sent is found by beat's periodic sweep.
        _orphan_delivery(hooks.env["KINEMA_DATABASE_URL"], endpoint["id"], job_id, request.body.decode())
        assert len(receiver.wait_for(2, timeout=30)) == 2, hooks.logs()
    broker.close()


def _orphan_delivery(database_url: str, endpoint_id: str, job_id: str, body: str) -> None:
    """An outbox row committed by a process that died before sending its task."""
    from sqlalchemy.orm import Session

    from app.db import make_engine, utcnow
    from app.webhooks.models import WebhookDelivery, WebhookEndpoint, new_id

    engine = make_engine(database_url)
    with Session(engine) as session:
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None
        session.add(
            WebhookDelivery(
                id=new_id("msg"),
                event_id=new_id("evt"),
                event_type="video.completed",
                api_key_id=endpoint.api_key_id,
                job_id=job_id,
                endpoint_id=endpoint_id,
                payload=body,
                next_attempt_at=utcnow(),
                dispatched_at=utcnow() - timedelta(seconds=10),
            )
        )
        session.commit()
    engine.dispose()
