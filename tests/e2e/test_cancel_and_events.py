"""Cancel and live progress over real HTTP with the live worker: a job canceled mid-denoise is `canceled`
within 2 s and stores nothing, a queued job canceled meanwhile never runs, and the worker then runs the
next job, whose event stream shows rising progress and ends with the finished job."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import s3_client
from tests.e2e.harness import Service
from tests.jobs.served import read_events

pytestmark = pytest.mark.e2e

SMALL = {"prompt": "a blue cube", "duration": 2, "resolution": "160x96", "fps": 8, "seed": 3}


def _s3_keys(live: Service, job_id: str) -> list[str]:
    s3 = s3_client(live.env)
    bucket = live.env["KINEMA_S3_BUCKET"]
    if not any(b["Name"] == bucket for b in s3.list_buckets()["Buckets"]):
        return []
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="videos/")
    return [item["Key"] for item in listing.get("Contents", []) if job_id in item["Key"]]


def test_cancel_mid_denoise_then_the_next_job_streams_to_success(live: Service, live_key: str) -> None:
    with live.client(live_key) as client:
        long = client.post("/generate", json={**SMALL, "num_inference_steps": 100})
        assert long.status_code == 202, long.text
        long_id = long.json()["id"]
        # One worker process: this one waits behind the long job.
        waiting_id = client.post("/generate", json={**SMALL, "num_inference_steps": 4}).json()["id"]

        canceled_at: float | None = None
        events: list[tuple[str, dict[str, Any]]] = []
        with client.stream("GET", f"/jobs/{long_id}/events", timeout=60) as stream:
            for name, job in read_events(stream):
                events.append((name, job))
                if canceled_at is None and job["phase"] == "denoising" and job["step"] >= 2:
                    waiting = client.post(f"/jobs/{waiting_id}/cancel")
                    assert waiting.status_code == 200 and waiting.json()["status"] == "canceled"
                    canceled_at = time.monotonic()
                    asked = client.post(f"/jobs/{long_id}/cancel")
                    assert asked.status_code == 200, asked.text
                    assert asked.json()["cancel_requested_at"] is not None
        stopped_after = time.monotonic() - (canceled_at or 0)

        assert canceled_at is not None, (events, live.logs())
        final = events[-1][1]
        assert final["status"] == "canceled", (final, live.logs())
        # The 2 s promise, on the server's clock (request recorded -> job canceled); the client's view
        # adds its own HTTP round trips and scheduling on a busy test machine.
        asked_at = datetime.fromisoformat(final["cancel_requested_at"])
        took = (datetime.fromisoformat(final["finished_at"]) - asked_at).total_seconds()
        assert took < 2.0, took
        assert stopped_after < 5.0, stopped_after
        assert final["step"] < 100 and final["output"] is None
        # The final event shows where it stopped, not less than the stream already showed.
        assert final["progress"] >= max(
            job["progress"] for _, job in events if job["status"] == "in_progress"
        )
        assert _s3_keys(live, long_id) == []
        again = client.post(f"/jobs/{long_id}/cancel")
        assert again.status_code == 200 and again.json()["status"] == "canceled"

        # The worker takes the next job normally; its stream rises and ends with the video.
        next_id = client.post("/generate", json={**SMALL, "num_inference_steps": 6}).json()["id"]
        with client.stream("GET", f"/jobs/{next_id}/events", timeout=120) as stream:
            events = list(read_events(stream))
        jobs = [job for _, job in events]
        assert events[0][0] == "status" and jobs[0]["status"] in ("queued", "in_progress")
        final = jobs[-1]
        assert events[-1][0] == "status" and final["status"] == "succeeded", (final, live.logs())
        assert final["progress"] == 100 and final["output"]["frames"] == 16
        running = [job["progress"] for job in jobs if job["status"] == "in_progress"]
        assert len(running) >= 3 and running == sorted(running) and running[0] < running[-1] < 100
        assert any(name == "progress" for name, _ in events)
        denoising = [job for job in jobs if job["phase"] == "denoising" and job["step"] >= 1]
        assert denoising and all(job["eta_seconds"] is not None for job in denoising)
        assert len(_s3_keys(live, next_id)) == 3  # MP4, thumbnail, spritesheet

        # The job canceled while queued never ran, though its task reached the worker.
        waiting = client.get(f"/jobs/{waiting_id}").json()
        assert waiting["status"] == "canceled" and waiting["attempts"] == 0 and waiting["started_at"] is None
    assert f"job {waiting_id} not claimed: gone" in live.processes[0].output()
