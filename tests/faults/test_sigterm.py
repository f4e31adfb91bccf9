"""SIGTERM to a worker in the middle of a job: nothing is lost, nothing runs twice.

- Plain SIGTERM is Celery's warm shutdown: the worker takes no new task, finishes its job, then exits.
- With `REMAP_SIGTERM=SIGQUIT` (what a container with a short stop grace period wants), SIGTERM is a
  cold shutdown: after KINEMA_WORKER_SOFT_SHUTDOWN_S the job's task goes back to the queue, unacknowledged,
  and another worker takes the job over once its lease has run out.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from functools import partial

import pytest

from tests.e2e.harness import Process, wait_for_job
from tests.faults.deployment import JOB, Deployment, wait_until
from tests.webhooks.receiver import receiving

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def key(deployment: Deployment) -> Iterator[str]:
    """A key whose jobs' events go to a webhook endpoint (the outbox then counts each state change)."""
    key = deployment.new_key("faults-sigterm")
    with receiving() as receiver, deployment.client(key) as client:
        events = ["video.in_progress", "video.completed"]
        assert client.post("/v1/webhooks", json={"url": receiver.url, "events": events}).status_code == 201
        yield key


def _ready(worker: Process) -> bool:
    return " ready." in worker.output()


def _running_on(deployment: Deployment, job_id: str) -> int:
    """The pool process that runs the job, once it is denoising."""
    row = wait_until(
        lambda: (lambda r: r if r["phase"] == "denoising" else None)(deployment.job(job_id)),
        timeout=120,
        interval=0.02,
        what=f"job {job_id} denoising\n{deployment.tail()}",
    )
    return int(row["worker"].rsplit(":", 1)[1])


def test_sigterm_lets_the_worker_finish_its_job(
    deployment: Deployment, key: str, gpu: Callable[..., Process]
) -> None:
    worker = gpu("gpu-warm")
    with deployment.client(key) as client:
        job_id = client.post("/generate", json=JOB).json()["id"]
        _running_on(deployment, job_id)
        os.kill(worker.popen.pid, signal.SIGTERM)
        signalled = time.monotonic()
        queued_after = client.post("/generate", json=JOB).json()["id"]
        job = wait_for_job(client, job_id, timeout=120).job
        assert worker.popen.wait(timeout=60) == 0
        exited_s = round(time.monotonic() - signalled, 2)
        # It took no new task while shutting down: the next job is still waiting for a worker.
        assert client.get(f"/jobs/{queued_after}").json()["status"] == "queued"
        assert client.post(f"/jobs/{queued_after}/cancel").status_code == 200
    assert job["status"] == "succeeded" and job["attempts"] == 1, (job, deployment.tail())
    assert worker.output().count(f"job {job_id} succeeded") == 1
    assert deployment.events(job_id, "video.completed") == 1
    print(
        "\nsigterm, warm:", json.dumps({"job": "finished by its worker", "worker_exited_after_s": exited_s})
    )


def test_sigterm_as_cold_shutdown_hands_the_job_back(
    deployment: Deployment, key: str, gpu: Callable[..., Process]
) -> None:
    cold = {"REMAP_SIGTERM": "SIGQUIT", "KINEMA_WORKER_SOFT_SHUTDOWN_S": "0.5"}
    workers = [gpu(name, **cold) for name in ("gpu-cold-a", "gpu-cold-b")]
    for worker in workers:
        wait_until(partial(_ready, worker), timeout=120, what=deployment.tail())
    with deployment.client(key) as client:
        # Long enough to outlast the half second its worker still gets, on a fast machine too (seconds).
        long_job = {**JOB, "resolution": "256x256", "duration": 2, "num_inference_steps": 100}
        job_id = client.post("/generate", json=long_job).json()["id"]
        leaving = deployment.owner_of(_running_on(deployment, job_id))
        os.kill(leaving.popen.pid, signal.SIGTERM)
        signalled = time.monotonic()
        assert leaving.popen.wait(timeout=60) == 0
        exited_s = round(time.monotonic() - signalled, 2)
        job = wait_for_job(client, job_id, timeout=180).job
        done_s = round(time.monotonic() - signalled, 2)
    assert job["status"] == "succeeded" and job["attempts"] == 2, (job, deployment.tail())
    (staying,) = (w for w in workers if w is not leaving)
    wait_until(lambda: f"job {job_id} succeeded" in staying.output(), timeout=10, what=deployment.tail())
    assert deployment.logs("gpu-").count(f"job {job_id} succeeded") == 1
    assert deployment.events(job_id, "video.in_progress") == deployment.events(job_id, "video.completed") == 1
    print(
        "\nsigterm, cold:",
        json.dumps({"worker_exited_after_s": exited_s, "job_succeeded_on_the_other_after_s": done_s}),
    )
