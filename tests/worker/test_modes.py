"""Job kinds in the worker: image, extend, edit, remix and a 60 s chained job, with inputs in moto's S3.

Each test commits job rows as the gateway writes them (kind, input_key, input_type, strength, parent_id),
runs `execute()` in process with the real tiny model, Postgres and S3, and reads the MP4 back.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from app.api_keys import service as keys
from app.db import session_scope
from app.jobs.runs import ClaimResult
from model.export import render_mp4
from tests.conftest import clear_caches, s3_client
from tests.worker.committed import add_job, job_row

SIZE = {"width": 64, "height": 64, "fps": 8}


def smooth_image(width: int, height: int, shift: int = 0) -> np.ndarray:
    """A smooth RGB gradient (H.264 keeps it well, unlike noise); `shift` moves it sideways."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    x = (x + shift) % width
    return np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=-1).astype(
        np.uint8
    )


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of b against a (uint8 range); inf when equal."""
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def decoded(path: Path) -> np.ndarray:
    """Every frame of a video file, (T, H, W, 3) uint8."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])])


@pytest.fixture
def key_id(settings_env: dict[str, str]) -> str:
    with session_scope() as session:
        return keys.create_key(session, "worker-modes").row.id


@pytest.fixture
def s3(settings_env: dict[str, str]) -> Iterator[tuple[Any, str]]:
    """moto's S3 client and the deployment's bucket (the worker creates it on first use)."""
    from app.storage import get_storage

    get_storage()  # creates the bucket
    yield s3_client(settings_env), settings_env["KINEMA_S3_BUCKET"]


def upload(s3: tuple[Any, str], key: str, data: bytes) -> str:
    client, bucket = s3
    client.put_object(Bucket=bucket, Key=key, Body=data)
    return key


def download(s3: tuple[Any, str], key: str, path: Path) -> Path:
    client, bucket = s3
    client.download_file(bucket, key, str(path))
    return path


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def run_job(key_id: str, **values: Any) -> Any:
    """Commit a job (64x64, 8 fps, 2 steps unless `values` say otherwise), execute it, return its row."""
    from worker.execution import execute

    job_id = add_job(key_id, **{**SIZE, "num_inference_steps": 2, **values})
    assert execute(job_id) is ClaimResult.CLAIMED
    return job_row(job_id)


def test_image_job_starts_with_the_image(
    key_id: str, s3: tuple[Any, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The visible label would cover a corner of the first frame: off here, so the whole frame compares.
    monkeypatch.setenv("KINEMA_WATERMARK_ENABLED", "false")
    clear_caches()
    image = smooth_image(96, 64)
    input_key = upload(s3, f"inputs/{key_id}/in_1.png", png(image))
    row = run_job(
        key_id, kind="image", input_key=input_key, input_type="image", width=96, height=64, num_frames=8
    )
    assert row.status == "succeeded", row.error_message
    frames = decoded(download(s3, row.video_key, tmp_path / "out.mp4"))
    assert frames.shape == (8, 64, 96, 3)
    # After the invisible watermark and H.264 at crf 23.
    assert psnr(image, frames[0]) > 30
    assert psnr(image, frames[-1]) < 20  # the rest is generated (noise, from the random tiny model)


def test_extend_job_is_the_parent_then_the_new_frames(
    key_id: str, s3: tuple[Any, str], tmp_path: Path
) -> None:
    parent = run_job(key_id, duration_s=1.0, num_frames=8)
    assert parent.status == "succeeded"
    row = run_job(key_id, kind="extend", parent_id=parent.id, duration_s=1.0, num_frames=8, seed=6)
    assert row.status == "succeeded", row.error_message
    assert (row.output_frames, row.output_duration_s) == (16, pytest.approx(2.0))
    parent_frames = decoded(download(s3, parent.video_key, tmp_path / "parent.mp4"))
    frames = decoded(download(s3, row.video_key, tmp_path / "out.mp4"))
    assert frames.shape == (16, 64, 64, 3)
    # The first part is the parent re-encoded with this job's invisible mark; its label is not drawn twice
    # (a second blend would darken the label's corner, which the per-corner figure would show).
    assert psnr(parent_frames, frames[:8]) > 30
    assert psnr(parent_frames[:, -16:, -32:], frames[:8, -16:, -32:]) > 30
    assert psnr(parent_frames[-1], frames[8]) < 25  # then new frames


def test_edit_job_keeps_the_size_and_length_of_the_source(
    key_id: str, s3: tuple[Any, str], tmp_path: Path
) -> None:
    source = tmp_path / "source.mp4"
    render_mp4(iter([smooth_image(80, 48, shift=4 * i) for i in range(12)]), source, fps=8)
    input_key = upload(s3, f"inputs/{key_id}/in_2.mp4", source.read_bytes())
    row = run_job(
        key_id,
        kind="edit",
        input_key=input_key,
        input_type="video",
        strength=0.5,
        width=80,
        height=48,
        duration_s=1.5,
        num_frames=12,
    )
    assert row.status == "succeeded", row.error_message
    frames = decoded(download(s3, row.video_key, tmp_path / "out.mp4"))
    assert frames.shape == (12, 48, 80, 3)


def test_remix_job_keeps_the_size_and_length_of_the_parent(
    key_id: str, s3: tuple[Any, str], tmp_path: Path
) -> None:
    parent = run_job(key_id, duration_s=1.0, num_frames=8, width=96)
    row = run_job(
        key_id, kind="remix", parent_id=parent.id, strength=0.7, prompt="a blue ball", num_frames=8, width=96
    )
    assert row.status == "succeeded", row.error_message
    assert decoded(download(s3, row.video_key, tmp_path / "out.mp4")).shape == (8, 64, 96, 3)


def test_a_60_s_job_is_made_in_chained_segments(key_id: str, s3: tuple[Any, str], tmp_path: Path) -> None:
    # 480 frames at 8 fps: 481 generated in 4 segments of at most 161 frames.
    row = run_job(key_id, duration_s=60.0, num_frames=480)
    assert row.status == "succeeded", row.error_message
    assert (row.output_frames, row.output_duration_s) == (480, pytest.approx(60.0))
    with av.open(str(download(s3, row.video_key, tmp_path / "out.mp4"))) as container:
        assert sum(1 for _ in container.decode(video=0)) == 480


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kind": "image", "input_key": "inputs/gone.png", "input_type": "image"}, "no longer in storage"),
        ({"kind": "extend", "parent_id": "video_missing"}, "names no parent video"),
    ],
)
def test_a_missing_input_fails_the_job_as_input_unreadable(
    key_id: str, s3: tuple[Any, str], values: dict[str, Any], message: str
) -> None:
    row = run_job(key_id, **values)
    assert (row.status, row.error_code) == ("failed", "input_unreadable")
    assert message in row.error_message


def test_a_corrupt_input_fails_the_job_as_input_unreadable(key_id: str, s3: tuple[Any, str]) -> None:
    video_key = upload(s3, f"inputs/{key_id}/in_3.mp4", b"\x00\x00\x00\x18ftypmp42" + b"junk" * 500)
    row = run_job(key_id, kind="edit", input_key=video_key, input_type="video", strength=0.5)
    assert (row.status, row.error_code) == ("failed", "input_unreadable")
    image_key = upload(s3, f"inputs/{key_id}/in_4.png", b"\x89PNG\r\n\x1a\nnot really")
    row = run_job(key_id, kind="image", input_key=image_key, input_type="image")
    assert (row.status, row.error_code) == ("failed", "input_unreadable")


def test_a_parent_whose_video_was_deleted_fails_the_extension(key_id: str, s3: tuple[Any, str]) -> None:
    parent = run_job(key_id, num_frames=8)
    client, bucket = s3
    client.delete_object(Bucket=bucket, Key=parent.video_key)
    row = run_job(key_id, kind="extend", parent_id=parent.id, num_frames=8)
    assert (row.status, row.error_code) == ("failed", "input_unreadable")
    assert "parent video" in row.error_message


def test_input_frames_are_checked_before_generating(key_id: str, s3: tuple[Any, str]) -> None:
    # An 8x8 image is below the input check's 16 px minimum side: refused by its sanity layer.
    input_key = upload(s3, f"inputs/{key_id}/in_5.png", png(smooth_image(8, 8)))
    row = run_job(key_id, kind="image", input_key=input_key, input_type="image")
    assert (row.status, row.error_code) == ("failed", "moderation_blocked")
    assert row.video_key is None
