"""Jobs with a soundtrack, in the worker in process: the tiny random-weight Stable Audio (the default
KINEMA_AUDIO_MODEL), the tiny Wan, Postgres, Redis and moto's S3. The stored MP4 has an AAC stream as
long as the video, still carries a valid C2PA manifest and the watermark; an extension keeps its parent's
sound; a cancel during the soundtrack stops the job."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from app.api_keys import service as keys
from app.api_keys.models import ApiKey
from app.config import get_settings
from app.db import session_scope
from app.jobs import cancel
from app.jobs.runs import ClaimResult
from app.provenance.service import verify_file
from model.export import probe_mp4, read_audio
from tests.conftest import clear_caches, s3_client
from tests.worker.committed import add_job, job_row

SMALL = {"width": 64, "height": 64, "fps": 8, "num_inference_steps": 2}


@pytest.fixture
def key_id(settings_env: dict[str, str]) -> str:
    with session_scope() as session:
        return keys.create_key(session, "worker-audio").row.id


@pytest.fixture
def s3(settings_env: dict[str, str]) -> Iterator[tuple[Any, str]]:
    from app.storage import get_storage

    get_storage()  # creates the bucket
    yield s3_client(settings_env), settings_env["KINEMA_S3_BUCKET"]


def download(s3: tuple[Any, str], key: str, path: Path) -> Path:
    client, bucket = s3
    client.download_file(bucket, key, str(path))
    return path


def run_job(key_id: str, **values: Any) -> Any:
    from worker.execution import execute

    job_id = add_job(key_id, **{**SMALL, **values})
    assert execute(job_id) is ClaimResult.CLAIMED
    return job_row(job_id)


def audio_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return float(stream.duration * stream.time_base)


def test_an_audio_job_stores_an_mp4_with_aac_as_long_as_the_video(
    key_id: str, s3: tuple[Any, str], tmp_path: Path
) -> None:
    row = run_job(key_id, audio=True, audio_prompt="birdsong", duration_s=1.5, num_frames=12)
    assert row.status == "succeeded", row.error_message
    assert (row.output_audio_codec, row.output_audio_sample_rate, row.output_audio_channels) == (
        "aac",
        44100,
        2,
    )
    path = download(s3, row.video_key, tmp_path / "out.mp4")
    probed = probe_mp4(path)
    assert (probed.frames, probed.duration) == (12, pytest.approx(1.5))
    assert probed.audio is not None and (probed.audio.codec, probed.audio.channels) == ("aac", 2)
    assert audio_seconds(path) == pytest.approx(1.5, abs=1024 / 44100)
    assert (probed.bytes, probed.sha256) == (row.output_bytes, row.output_sha256)
    # The signed manifest covers the file with its audio; the invisible watermark still names the job.
    with session_scope() as session:
        verified = verify_file(session, get_settings(), path)
    assert verified.c2pa.valid and verified.c2pa.job_id == row.id
    assert verified.watermark.found and verified.watermark.job_id == row.id


def test_a_job_without_audio_has_no_audio_stream(key_id: str, s3: tuple[Any, str], tmp_path: Path) -> None:
    row = run_job(key_id)
    assert row.status == "succeeded" and row.output_audio_codec is None
    assert probe_mp4(download(s3, row.video_key, tmp_path / "out.mp4")).audio is None


def test_an_extension_keeps_its_parents_sound_and_continues_it(
    key_id: str, s3: tuple[Any, str], tmp_path: Path
) -> None:
    parent = run_job(key_id, audio=True, duration_s=1.0, num_frames=8, seed=3)
    assert parent.status == "succeeded", parent.error_message
    row = run_job(
        key_id, kind="extend", parent_id=parent.id, audio=True, duration_s=1.0, num_frames=8, seed=9
    )
    assert row.status == "succeeded", row.error_message
    assert (row.output_frames, row.output_duration_s, row.output_audio_codec) == (
        16,
        pytest.approx(2.0),
        "aac",
    )
    out = download(s3, row.video_key, tmp_path / "out.mp4")
    assert audio_seconds(out) == pytest.approx(2.0, abs=1024 / 44100)
    before = read_audio(
        download(s3, parent.video_key, tmp_path / "parent.mp4"), sample_rate=44100, channels=2
    )
    after = read_audio(out, sample_rate=44100, channels=2)
    assert before is not None and after is not None
    # The parent's second, up to the crossfade into the new sound (AAC twice over: close, not equal).
    kept = slice(2048, 44100 - 22050)
    correlation = np.corrcoef(before.samples[:, kept].ravel(), after.samples[:, kept].ravel())[0, 1]
    assert correlation > 0.9
    # The new second has sound of its own (the tiny model's noise), not silence.
    assert float(np.abs(after.samples[:, 44100 + 2048 :]).mean()) > 0.01


def test_a_cancel_during_the_soundtrack_stops_the_job_and_stores_nothing(
    key_id: str, settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.execution import execute

    monkeypatch.setenv("KINEMA_AUDIO_STEPS", "2000")  # a soundtrack long enough to cancel mid-way
    clear_caches()
    job_id = add_job(key_id, **SMALL, audio=True)
    asked: dict[str, Any] = {}

    def cancel_once_making_audio() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            row = job_row(job_id)
            if row.phase == "audio" and row.step >= 1:
                with session_scope() as session:
                    key = session.get(ApiKey, key_id)
                    assert key is not None
                    asked.update(status=cancel.cancel(session, key, job_id, lease_s=60).status)
                    asked.update(progress=row.progress)
                return
            time.sleep(0.05)

    canceler = threading.Thread(target=cancel_once_making_audio)
    canceler.start()
    execute(job_id)
    canceler.join(timeout=10)
    assert asked.get("status") == "in_progress", asked
    assert 5 <= asked["progress"] <= 15  # the soundtrack's share of the bar comes first
    row = job_row(job_id)
    assert (row.status, row.phase, row.video_key, row.output_audio_codec) == ("canceled", "audio", None, None)
    assert row.step < 2000
