"""A finished job's MP4 carries a valid C2PA manifest and a watermark that names it, even after crf 28."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest

from tests.e2e.harness import Service, kinema, wait_for_job

pytestmark = pytest.mark.e2e


def reencode(source: Path, dest: Path, crf: int) -> None:
    """Decode and encode again with libx264 at `crf` (what a re-upload does), dropping the manifest."""
    with av.open(str(source)) as src, av.open(str(dest), "w") as out:
        stream = None
        for frame in src.decode(video=0):
            if stream is None:
                stream = out.add_stream("libx264", rate=8, options={"crf": str(crf)})
                stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, "yuv420p"
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), "rgb24")))
        assert stream is not None
        out.mux(stream.encode(None))


def test_finished_video_is_signed_and_traceable_after_reencode(
    live: Service, live_key: str, artifacts: Path
) -> None:
    request = {"prompt": "a lighthouse at dusk", "duration": 2, "resolution": "160x96", "fps": 8, "seed": 7}
    with live.client(live_key) as client:
        submitted = client.post("/generate", json={**request, "num_inference_steps": 4})
        assert submitted.status_code == 202, submitted.text
        job = wait_for_job(client, submitted.json()["id"]).job
        assert job["status"] == "succeeded", (job, live.logs())
        video = client.get(f"/jobs/{job['id']}/video", follow_redirects=True)
        path = artifacts / "job.mp4"
        path.write_bytes(video.content)

        verified = client.post(
            "/v1/provenance/verify", files={"file": ("job.mp4", video.content, "video/mp4")}
        )
        assert verified.status_code == 200, verified.text
        body = verified.json()
        assert body["c2pa"]["valid"] and body["c2pa"]["job_id"] == job["id"]
        assert body["c2pa"]["actions"][0]["digitalSourceType"].endswith("/trainedAlgorithmicMedia")
        assert body["watermark"]["found"] and body["watermark"]["job_id"] == job["id"]

        reencode(path, artifacts / "crf28.mp4", crf=28)
        again = client.post(
            "/v1/provenance/verify",
            files={"file": ("crf28.mp4", (artifacts / "crf28.mp4").read_bytes(), "video/mp4")},
        ).json()
        # The re-encode drops the manifest; the watermark still names the job.
        assert not again["c2pa"]["present"]
        assert again["watermark"]["job_id"] == job["id"], again

    result = kinema(["verify", str(artifacts / "crf28.mp4"), "--json"], live.env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["watermark"]["job_id"] == job["id"]
