"""S3 down while a job uploads: the upload retries with backoff; back in time, the job succeeds; past the
limit (4 tries here, 0.5 s then doubling), it fails with `storage_unavailable`, leaves no object behind,
and submitting it again works once S3 is back.

"Down" is the S3 endpoint closing its port and every connection (`FaultProxy.stop`), what a client
sees when the server dies; `cut` fails only the MP4's upload, after the thumbnail and spritesheet went in.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import s3_client
from tests.e2e.harness import wait_for_job
from tests.faults.deployment import JOB, Deployment, object_keys, restore, wait_until
from tests.faults.servers import FaultProxy, RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TRIES = 4  # KINEMA_STORAGE_RETRY_ATTEMPTS in tests/faults/deployment.py


@pytest.fixture(scope="module")
def key(deployment: Deployment) -> Iterator[str]:
    """A key, and one generation worker for the module's tests."""
    worker = deployment.gpu_worker("gpu-s3")
    yield deployment.new_key("faults-s3")
    deployment.kill(worker)


@pytest.fixture(autouse=True)
def s3_up_again(deployment: Deployment, redis_server: RedisServer, s3: FaultProxy) -> Iterator[None]:
    yield
    restore(deployment, redis_server, s3)


def _upload_failures(deployment: Deployment, job_id: str) -> int:
    """Failed tries of the job's uploads, from the worker's log (each retry and the last one are logged)."""
    failed = re.compile(rf"upload of videos/\S+/{job_id}\.\S+ failed( \(attempt|, giving up)")
    return len(failed.findall(deployment.logs("gpu-s3")))


def _stored(deployment: Deployment, s3: FaultProxy, job_id: str) -> list[str]:
    storage = s3_client({**deployment.env, "KINEMA_S3_ENDPOINT_URL": s3.url})
    return object_keys(storage, deployment.env["KINEMA_S3_BUCKET"], job_id)


def _stop_when_denoising(deployment: Deployment, s3: FaultProxy, job_id: str) -> float:
    wait_until(
        lambda: deployment.job(job_id)["phase"] == "denoising",
        timeout=120,
        interval=0.02,
        what=f"job {job_id} denoising\n{deployment.tail()}",
    )
    s3.stop()
    return time.monotonic()


def test_s3_back_in_time_the_job_succeeds(deployment: Deployment, key: str, s3: FaultProxy) -> None:
    with deployment.client(key) as client:
        job_id = client.post("/generate", json=JOB).json()["id"]
        _stop_when_denoising(deployment, s3, job_id)
        wait_until(lambda: _upload_failures(deployment, job_id) >= 2, timeout=120, what=deployment.tail())
        s3.start()
        back = time.monotonic()
        job = wait_for_job(client, job_id, timeout=60).job
        recovered_s = round(time.monotonic() - back, 2)
    assert job["status"] == "succeeded", (job, deployment.tail())
    assert job["attempts"] == 1
    failures = _upload_failures(deployment, job_id)
    assert 2 <= failures < TRIES
    assert len(_stored(deployment, s3, job_id)) == 3
    print(
        "\ns3 back in time:", json.dumps({"failed_tries": failures, "succeeded_after_s3_back_s": recovered_s})
    )


def test_s3_down_past_the_limit_fails_the_job_and_stores_nothing(
    deployment: Deployment, key: str, s3: FaultProxy
) -> None:
    with deployment.client(key) as client:
        job_id = client.post("/generate", json=JOB).json()["id"]
        down = _stop_when_denoising(deployment, s3, job_id)
        job = wait_for_job(client, job_id, timeout=120).job
        failed_after_s = round(time.monotonic() - down, 2)
        assert job["status"] == "failed", (job, deployment.tail())
        assert job["error"]["code"] == "storage_unavailable" and job["output"] is None
        assert _upload_failures(deployment, job_id) == TRIES  # the thumbnail, tried 4 times
        s3.start()
        assert _stored(deployment, s3, job_id) == []
        assert client.get(f"/jobs/{job_id}/video").status_code == 409
        # The user's retry: the same request again, now that S3 is back.
        again = client.post("/generate", json=JOB).json()["id"]
        assert wait_for_job(client, again, timeout=120).job["status"] == "succeeded"
    print("\ns3 down past the limit:", json.dumps({"tries": TRIES, "failed_after_s3_down_s": failed_after_s}))


def test_a_failed_video_upload_removes_the_thumbnail_and_spritesheet(
    deployment: Deployment, key: str, s3: FaultProxy
) -> None:
    s3.cut(rb"PUT /[^ ]+\.mp4 HTTP/1\.1")
    with deployment.client(key) as client:
        job_id = client.post("/generate", json=JOB).json()["id"]
        job: dict[str, Any] = wait_for_job(client, job_id, timeout=120).job
    assert job["status"] == "failed" and job["error"]["code"] == "storage_unavailable", (
        job,
        deployment.tail(),
    )
    assert _upload_failures(deployment, job_id) == TRIES and s3.cut_count >= TRIES
    log = deployment.logs("gpu-s3")
    # The thumbnail and spritesheet were stored before the MP4's tries ran out; they are gone again.
    assert f"{job_id}.jpg failed" not in log and f"{job_id}.sprites.jpg failed" not in log
    assert _stored(deployment, s3, job_id) == []
    print("\ns3 mp4 upload cut:", json.dumps({"cut_requests": s3.cut_count}))
