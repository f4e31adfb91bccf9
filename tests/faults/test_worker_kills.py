"""Workers SIGKILLed mid-denoise five times in a row, across two workers: every job finishes exactly once.

Kills alternate between the pool process that runs the job (its worker's main process survives and
hands the task back) and the whole worker (a host that dies: its task stays unacknowledged in Redis
for the visibility timeout, an hour, so only the sweeper can bring the job back; the worker is then
started again, as an orchestrator would).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from tests.conftest import s3_client
from tests.e2e.harness import Process, wait_for_job
from tests.faults.deployment import JOB, Deployment, object_keys, wait_until
from tests.faults.servers import FaultProxy
from tests.webhooks.receiver import receiving

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(360)]

KILLS = 5


def _denoising(deployment: Deployment, job_id: str) -> dict[str, Any] | None:
    rows = deployment.query(
        "SELECT id, worker, attempts FROM jobs WHERE id = %s AND status = 'in_progress' "
        "AND phase = 'denoising'",
        job_id,
    )
    return rows[0] if rows else None


def _recovery(deployment: Deployment, job_id: str, killed_at: float) -> dict[str, float]:
    """Seconds from the kill until the job was free again (re-queued, or its lease over) and claimed."""
    times: dict[str, float] = {}
    while "claimed" not in times:
        row = deployment.job(job_id)
        now = round(time.monotonic() - killed_at, 2)
        if row["status"] == "queued":
            times.setdefault("requeued", now)
        if row["attempts"] > 1 or row["status"] == "succeeded":
            times["claimed"] = now
        assert now < 60, f"job {job_id} not taken up again\n{deployment.tail()}"
        time.sleep(0.05)
    return times


def test_every_job_finishes_once_through_five_kills(
    deployment: Deployment, s3: FaultProxy, gpu: Callable[..., Process]
) -> None:
    gpu("gpu-a")
    gpu("gpu-b")
    key = deployment.new_key("faults-kills")
    kills: list[dict[str, Any]] = []
    with receiving() as receiver, deployment.client(key) as client:
        events = ["video.in_progress", "video.completed"]
        assert client.post("/v1/webhooks", json={"url": receiver.url, "events": events}).status_code == 201
        ids: list[str] = []
        for n in range(KILLS):
            # A new job each round, killed once it is denoising; the others run on meanwhile.
            job_id = client.post("/generate", json={**JOB, "seed": n}).json()["id"]
            ids.append(job_id)
            row = wait_until(
                partial(_denoising, deployment, job_id),
                timeout=120,
                interval=0.02,
                what=f"job {job_id} denoising (kill #{n})\n{deployment.tail()}",
            )
            pid = int(row["worker"].rsplit(":", 1)[1])
            owner = deployment.owner_of(pid)
            whole = n % 2 == 1
            killed_at = time.monotonic()
            if whole:
                deployment.kill(owner)
                gpu(owner.name.split(".")[0])  # the orchestrator starts a new one
            else:
                os.kill(pid, signal.SIGKILL)
            recovered = _recovery(deployment, job_id, killed_at)
            kills.append({"job": job_id, "what": "whole worker" if whole else "pool process", **recovered})

        finished = {job_id: wait_for_job(client, job_id, timeout=180).job for job_id in ids}
        received = receiver.wait_for(2 * len(ids), timeout=60)
        time.sleep(2.5)  # sweeps run every second: nothing more may arrive
        assert len(receiver.received) == 2 * len(ids)

    bucket = deployment.env["KINEMA_S3_BUCKET"]
    storage = s3_client({**deployment.env, "KINEMA_S3_ENDPOINT_URL": s3.url})
    worker_logs = deployment.logs("gpu-")
    for job_id, job in finished.items():
        assert job["status"] == "succeeded", (job, deployment.tail())
        assert job["attempts"] == 2, job
        # One succeeded transition (and one start), one webhook event of each, one video.
        assert deployment.events(job_id, "video.completed") == 1
        assert deployment.events(job_id, "video.in_progress") == 1
        types = Counter(
            json.loads(r.body)["type"] for r in received if json.loads(r.body)["data"]["id"] == job_id
        )
        assert types == {"video.in_progress": 1, "video.completed": 1}, types
        assert worker_logs.count(f"job {job_id} succeeded") == 1
        keys = object_keys(storage, bucket, job_id)
        assert [k.rsplit("/", 1)[1] for k in keys] == [
            f"{job_id}.jpg",
            f"{job_id}.mp4",
            f"{job_id}.sprites.jpg",
        ]
        video = storage.get_object(Bucket=bucket, Key=deployment.job(job_id)["video_key"])["Body"].read()
        assert hashlib.sha256(video).hexdigest() == job["output"]["sha256"]
    assert len(kills) == KILLS and {k["what"] for k in kills} == {"whole worker", "pool process"}
    print("\nworker kills:", json.dumps(kills))
