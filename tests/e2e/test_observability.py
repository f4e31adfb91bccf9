"""Operations, for real: a worker's metrics on its port and its JSON log lines carrying the job id."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.e2e.harness import Service, clean_env, create_key, start, wait_for_job, wait_ready
from tests.ops.test_metrics import value
from tests.webhooks.receiver import receiving

pytestmark = pytest.mark.e2e

STEPS = 3
JOB = {"prompt": "a red ball", "duration": 1, "resolution": "64x64", "fps": 8, "num_inference_steps": STEPS}


@pytest.fixture(scope="module")
def observed(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """API and one prefork worker (both queues) serving its metrics on a port of its own."""
    logs = tmp_path_factory.mktemp("observed-logs")
    port, metrics_port = free_port(), free_port()
    suffix = uuid.uuid4().hex[:8]
    env = clean_env(
        {
            **service_env,
            "KINEMA_HOME": str(tmp_path_factory.mktemp("observed-home")),
            "KINEMA_QUEUE_NAME": f"kinema.observed.{suffix}",
            "KINEMA_WEBHOOK_QUEUE_NAME": f"kinema.observed.webhooks.{suffix}",
            "KINEMA_WORKER_METRICS_PORT": str(metrics_port),
        }
    )
    worker = start("worker", ["worker", "--concurrency", "1"], env, logs)
    api = start("api", ["serve", "--port", str(port)], env, logs)
    service = Service(base_url=f"http://127.0.0.1:{port}", env=env, processes=[worker, api])
    try:
        wait_ready(service.base_url, service.processes)
        yield service
    finally:
        service.stop()


def scrape(url: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=5).text
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def log_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_job_shows_in_the_workers_metrics_and_logs(observed: Service) -> None:
    key = create_key(observed.env)
    worker_metrics = f"http://127.0.0.1:{observed.env['KINEMA_WORKER_METRICS_PORT']}/metrics"
    model = {"model": "builtin:tiny-wan"}
    before = scrape(worker_metrics)
    with receiving() as receiver, observed.client(key) as client:
        response = client.post("/generate", json={**JOB, "webhook_url": f"{receiver.url}/hook"})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        assert wait_for_job(client, job_id).job["status"] == "succeeded"
        receiver.wait_for(1)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            after = scrape(worker_metrics)
            if value(after, "kinema_webhook_deliveries_total", outcome="succeeded") > value(
                before, "kinema_webhook_deliveries_total", outcome="succeeded"
            ):
                break
            time.sleep(0.2)
        api_page = client.get("/metrics").text

    finished = {"model": "builtin:tiny-wan", "status": "succeeded"}
    assert (
        value(after, "kinema_jobs_finished_total", **finished)
        - value(before, "kinema_jobs_finished_total", **finished)
        == 1
    )
    assert value(after, "kinema_job_queue_wait_seconds_count", **model) >= 1
    assert value(after, "kinema_job_generation_seconds_count", **finished) >= 1
    assert value(after, "kinema_job_generation_seconds_sum", **finished) > 0
    # Each step after the first is timed (the first one's start is not reported by the pipeline).
    steps = value(after, "kinema_denoise_step_seconds_count", **model)
    assert steps - value(before, "kinema_denoise_step_seconds_count", **model) == STEPS - 1
    assert value(after, "kinema_webhook_deliveries_total", outcome="succeeded") >= 1
    # The API side: its own requests, and the jobs table by status.
    assert value(api_page, "kinema_jobs", status="succeeded") >= 1
    assert value(api_page, "kinema_http_requests_total", method="POST", route="/generate", status="202") >= 1

    worker_lines = log_lines(observed.processes[0].output())
    about_job = [line for line in worker_lines if job_id in json.dumps(line)]
    assert about_job, observed.logs()
    assert all(line.get("job_id") == job_id for line in about_job), about_job
    assert any(line.get("job_id") == job_id and "succeeded" in line["message"] for line in about_job)
    assert all("task_id" in line for line in worker_lines if line.get("job_id"))
    api_lines = log_lines(observed.processes[1].output())
    submit = [line for line in api_lines if line.get("route") == "/generate"]
    assert submit and submit[0]["job_id"] == job_id and submit[0]["request_id"]
    assert key not in observed.processes[1].output() and key not in observed.processes[0].output()
