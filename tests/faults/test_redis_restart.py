"""Redis killed while jobs are queued and running, then started again empty (it keeps nothing on disk).

No job is lost: the running one finishes (its state is in Postgres; only its acknowledgement is lost),
and the queued ones, whose tasks died with Redis, are sent again by the sweeper once Redis is back.
While Redis is down the API answers a submit with a 503 and a JSON error at once, and reads still work.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from tests.e2e.harness import Process, wait_for_job
from tests.faults.deployment import JOB, Deployment, wait_until
from tests.faults.servers import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def test_a_redis_restart_loses_no_job(
    deployment: Deployment, redis_server: RedisServer, gpu: Callable[..., Process]
) -> None:
    gpu("gpu-redis")
    key = deployment.new_key("faults-redis")
    figures: dict[str, object] = {}
    with deployment.client(key) as client:
        running = client.post("/generate", json=JOB).json()["id"]
        queued = [client.post("/generate", json={**JOB, "seed": n}).json()["id"] for n in (1, 2)]
        wait_until(
            lambda: deployment.job(running)["phase"] == "denoising",
            timeout=120,
            interval=0.02,
            what=f"job {running} denoising\n{deployment.tail()}",
        )
        redis_server.kill()

        started = time.monotonic()
        refused = client.post("/generate", json=JOB)
        figures["submit_503_s"] = round(time.monotonic() - started, 2)
        assert refused.status_code == 503, refused.text
        error = refused.json()["error"]
        assert error["code"] == "queue_unavailable" and "queue" in error["message"], error
        assert figures["submit_503_s"] < 10  # type: ignore[operator]
        started = time.monotonic()
        read = client.get(f"/jobs/{queued[0]}")
        figures["read_while_down_s"] = round(time.monotonic() - started, 2)
        assert read.status_code == 200 and read.json()["status"] == "queued"
        time.sleep(2)

        redis_server.start()
        back = time.monotonic()
        wait_until(
            lambda: deployment.job(queued[0])["status"] != "queued",
            timeout=60,
            what=f"queued job {queued[0]} taken after Redis came back\n{deployment.tail()}",
        )
        figures["queued_job_running_after_redis_back_s"] = round(time.monotonic() - back, 2)
        done = {job_id: wait_for_job(client, job_id, timeout=180).job for job_id in [running, *queued]}
        figures["all_done_after_redis_back_s"] = round(time.monotonic() - back, 2)
        for job in done.values():
            assert job["status"] == "succeeded", (job, deployment.tail())
            assert job["attempts"] == 1, job
        # The refused submit left a failed job, not a queued one that would never run; asked again, it runs.
        [failed] = deployment.query(
            "SELECT j.error_code FROM jobs j JOIN api_keys k ON k.id = j.api_key_id "
            "WHERE k.name = 'faults-redis' AND j.status = 'failed'"
        )
        assert failed["error_code"] == "queue_unavailable"
        again = client.post("/generate", json=JOB)
        assert again.status_code == 202
        assert wait_for_job(client, again.json()["id"], timeout=120).job["status"] == "succeeded"
    sweeps = deployment.logs("webhooks")
    # The queued jobs' tasks were lost with Redis; the sweeper sent them again (the running one was
    # never re-sent: its worker kept its lease).
    resent = [line for line in sweeps.splitlines() if "had lost their task" in line]
    assert resent and all(job_id in "".join(resent) for job_id in queued), deployment.tail()
    assert running not in "".join(resent)
    print("\nredis restart:", json.dumps(figures))
