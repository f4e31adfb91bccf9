"""A worker process killed mid-job: the job is taken up again and finishes exactly once."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import s3_client
from tests.e2e.harness import Service, probe_mp4, wait_for_job

pytestmark = pytest.mark.e2e


def test_killed_worker_process_job_finishes_once(live: Service, live_key: str, artifacts: Path) -> None:
    killed: dict[str, Any] = {}

    def kill_once(job: dict[str, Any]) -> None:
        # SIGKILL the pool process that runs the job once it is denoising: no chance to clean up.
        if killed or job["status"] != "in_progress" or job["phase"] != "denoising":
            return
        from sqlalchemy import create_engine, text

        engine = create_engine(live.env["KINEMA_DATABASE_URL"])
        with engine.connect() as conn:
            worker = conn.execute(
                text("SELECT worker FROM jobs WHERE id = :id"), {"id": job["id"]}
            ).scalar_one()
        engine.dispose()
        pid = int(worker.rsplit(":", 1)[1])
        os.kill(pid, signal.SIGKILL)
        killed.update(pid=pid, progress=job["progress"])

    with live.client(live_key) as client:
        submitted = client.post(
            "/generate",
            json={"prompt": "a blue cube", "duration": 2, "resolution": "256x256", "num_inference_steps": 30},
        )
        assert submitted.status_code == 202
        job_id = submitted.json()["id"]
        finished = wait_for_job(client, job_id, timeout=240, interval=0.02, on_poll=kill_once)
        assert killed, "the job finished before it could be killed"
        job = finished.job
        assert job["status"] == "succeeded", (job, live.logs())
        assert job["attempts"] == 2
        # After the kill the job was seen in progress again and then done; never failed.
        assert all(status in ("queued", "in_progress", "succeeded") for status, _ in finished.seen)
        video = client.get(f"/jobs/{job_id}/video", follow_redirects=True)
        path = artifacts / "after-kill.mp4"
        path.write_bytes(video.content)
    assert probe_mp4(path).frames == job["output"]["frames"] == 16

    s3 = s3_client(live.env)
    listing = s3.list_objects_v2(Bucket=live.env["KINEMA_S3_BUCKET"], Prefix="videos/")
    assert sum(1 for o in listing.get("Contents", []) if o["Key"].endswith(f"{job_id}.mp4")) == 1
    assert live.processes[0].output().count(f"job {job_id} succeeded") == 1
    assert live.processes[0].popen.poll() is None, "the worker's main process survives a pool process kill"
