"""Postgres backends terminated under a running worker, again and again: its state writes (claim,
progress, heartbeat, success) retry on a fresh connection, and no job is stuck or run twice."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import pytest

from tests.e2e.harness import Process, wait_for_job
from tests.faults.deployment import JOB, Deployment

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

# The worker's connections carry this name, so the test terminates theirs and nobody else's.
WORKER_APP = "kinema-faults-worker"


class Terminator:
    """Terminates every backend of the worker every `interval_s` seconds while running."""

    def __init__(self, deployment: Deployment, interval_s: float) -> None:
        self.deployment = deployment
        self.interval_s = interval_s
        self.terminated = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            rows = self.deployment.query(
                "SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = %s",
                WORKER_APP,
            )
            self.terminated += sum(1 for row in rows if row["done"])

    def __enter__(self) -> Terminator:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def test_terminated_backends_do_not_stop_the_worker(
    deployment: Deployment, gpu: Callable[..., Process]
) -> None:
    url = deployment.env["KINEMA_DATABASE_URL"]
    gpu("gpu-pg", KINEMA_DATABASE_URL=f"{url}?application_name={WORKER_APP}")
    key = deployment.new_key("faults-postgres")
    with deployment.client(key) as client:
        started = time.monotonic()
        with Terminator(deployment, interval_s=0.4) as terminator:
            # Jobs one after another until the worker lost at least 5 connections (a fast machine
            # finishes a job between two terminations), at least 2 jobs, at most 10.
            ids: list[str] = []
            while len(ids) < 2 or (terminator.terminated < 5 and len(ids) < 10):
                ids.append(client.post("/generate", json={**JOB, "seed": len(ids)}).json()["id"])
                wait_for_job(client, ids[-1], timeout=180)
            jobs = [wait_for_job(client, job_id, timeout=180).job for job_id in ids]
        took = round(time.monotonic() - started, 2)
    for job in jobs:
        assert job["status"] == "succeeded", (job, deployment.tail())
    attempts = [job["attempts"] for job in jobs]
    # A termination that lands on a claim's commit makes the retried claim wait out the lease (attempt 2).
    assert all(n <= 2 for n in attempts), attempts
    log = deployment.logs("gpu-pg")
    retried = log.count("failed (attempt")
    assert terminator.terminated >= 5 and retried >= 1, (terminator.terminated, deployment.tail())
    assert "giving up" not in log
    for job in jobs:
        assert log.count(f"job {job['id']} succeeded") == 1
    figures = {"backends_terminated": terminator.terminated, "writes_retried": retried, "attempts": attempts}
    print("\npostgres drops:", json.dumps({**figures, "jobs_s": took}))
