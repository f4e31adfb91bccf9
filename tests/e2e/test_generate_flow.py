"""The whole spine over real HTTP: POST /generate -> Celery worker -> diffusers -> MP4 in S3 -> download."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import s3_client
from tests.e2e.harness import Service, probe_mp4, wait_for_job

pytestmark = pytest.mark.e2e


def test_generate_poll_download(live: Service, live_key: str, artifacts: Path) -> None:
    request = {
        "prompt": "a red ball rolling across a wooden table",
        "duration": 2,
        "resolution": "160x96",
        "fps": 8,
        "seed": 42,
        "num_inference_steps": 6,
    }
    with live.client(live_key) as client:
        submitted = client.post("/generate", json=request)
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        assert submitted.headers["location"] == f"/jobs/{job_id}"

        finished = wait_for_job(client, job_id)
        job = finished.job
        assert job["status"] == "succeeded", (job, live.logs())
        assert job["progress"] == 100 and job["error"] is None
        # Progress moved through the middle of the bar while the worker ran.
        assert any(status == "in_progress" and 0 < progress < 100 for status, progress in finished.seen), (
            finished.seen
        )
        progresses = [p for _, p in finished.seen]
        assert progresses == sorted(progresses)

        output = job["output"]
        assert (output["width"], output["height"], output["fps"], output["frames"]) == (160, 96, 8, 16)
        assert output["duration"] == pytest.approx(2.0)

        video = client.get(f"/jobs/{job_id}/video", follow_redirects=True)
        assert video.status_code == 200
        path = artifacts / "out.mp4"
        path.write_bytes(video.content)
        assert len(video.content) == output["bytes"]
        assert hashlib.sha256(video.content).hexdigest() == output["sha256"]

        thumb = client.get(f"/jobs/{job_id}/thumbnail", follow_redirects=True)
        assert thumb.status_code == 200
        image = Image.open(io.BytesIO(thumb.content))
        assert image.format == "JPEG" and image.size == (160, 96)

    probe = probe_mp4(path)
    assert (probe.width, probe.height, probe.frames) == (160, 96, 16)
    assert probe.fps == pytest.approx(8)
    assert probe.duration == pytest.approx(2.0, abs=0.01)
    assert probe.codec == "h264" and probe.pix_fmt == "yuv420p"

    s3 = s3_client(live.env)
    bucket = live.env["KINEMA_S3_BUCKET"]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="videos/").get("Contents", [])}
    video_keys = {k for k in keys if k.endswith(f"{job_id}.mp4")}
    assert len(video_keys) == 1 and next(iter(video_keys)).startswith("videos/key_")
    assert any(k.endswith(f"{job_id}.jpg") for k in keys)
    head = s3.head_object(Bucket=bucket, Key=next(iter(video_keys)))
    assert head["ContentType"] == "video/mp4" and head["ContentLength"] == output["bytes"]
