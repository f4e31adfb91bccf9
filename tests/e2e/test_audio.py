"""A job with a soundtrack over real HTTP: POST /generate with `audio` -> worker (tiny Wan + the default tiny
Stable Audio) -> an MP4 in S3 with an AAC stream as long as the video, signed and watermarked."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from tests.e2e.harness import Service, kinema, probe_mp4, wait_for_job

pytestmark = pytest.mark.e2e


def test_generate_with_audio_gives_an_mp4_with_an_audio_stream(
    live: Service, live_key: str, artifacts: Path
) -> None:
    request = {
        "prompt": "a paper boat on a pond",
        "audio_prompt": "water lapping, a light breeze",
        "duration": 2,
        "resolution": "160x96",
        "fps": 8,
        "seed": 4,
        "num_inference_steps": 4,
    }
    with live.client(live_key) as client:
        submitted = client.post("/generate", json=request)
        assert submitted.status_code == 202, submitted.text
        assert submitted.json()["parameters"]["audio"] is True
        finished = wait_for_job(client, submitted.json()["id"])
        job = finished.job
        assert job["status"] == "succeeded", (job, live.logs())
        progresses = [p for _, p in finished.seen]
        assert progresses == sorted(progresses)
        output = job["output"]
        assert (
            output["audio"],
            output["audio_codec"],
            output["audio_sample_rate"],
            output["audio_channels"],
        ) == (
            True,
            "aac",
            44100,
            2,
        )
        video = client.get(f"/jobs/{job['id']}/video", follow_redirects=True)
        assert video.status_code == 200
        path = artifacts / "with-audio.mp4"
        path.write_bytes(video.content)
        verified = client.post("/v1/provenance/verify", files={"file": ("a.mp4", video.content, "video/mp4")})
        assert verified.status_code == 200, verified.text
        assert verified.json()["c2pa"]["valid"] and verified.json()["watermark"]["job_id"] == job["id"]

    probe = probe_mp4(path)
    assert (probe.width, probe.height, probe.frames) == (160, 96, 16)
    with av.open(str(path)) as container:
        assert sorted(s.type for s in container.streams) == ["audio", "video"]
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac"
        assert float(audio.duration * audio.time_base) == pytest.approx(2.0, abs=1024 / 44100)


def test_the_cli_asks_for_a_soundtrack(live: Service, live_key: str, tmp_path: Path) -> None:
    env = {**live.env, "KINEMA_API_KEY": live_key, "KINEMA_BASE_URL": live.base_url}
    out = tmp_path / "cli.mp4"
    args = ["generate", "a kettle on a stove", "--audio-prompt", "a whistling kettle", "--duration", "1"]
    result = kinema([*args, "--size", "64x64", "--steps", "2", "-o", str(out)], env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "aac audio" in result.stdout
    probed = probe_mp4(out)
    assert probed.frames == 8
    with av.open(str(out)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
