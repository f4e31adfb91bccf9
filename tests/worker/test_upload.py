"""Storing a run's outputs: tries with backoff; a failed set is removed again (no thumbnail without video)."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import pytest

from app.config import Settings
from app.storage import LocalStorage, S3Storage, StorageError
from tests.conftest import free_port
from worker.upload import Output, store_outputs


def _outputs(tmp_path: Path) -> list[Output]:
    files = []
    for name, content_type in (
        ("j.jpg", "image/jpeg"),
        ("j.sprites.jpg", "image/jpeg"),
        ("j.mp4", "video/mp4"),
    ):
        path = tmp_path / name
        path.write_bytes(b"bytes of " + name.encode())
        files.append(Output(f"videos/k/{name}", path, content_type))
    return files


def _settings(**values: object) -> Settings:
    return Settings(storage_retry_attempts=3, storage_retry_backoff_s=0.01, **values)  # type: ignore[arg-type]


def test_outputs_are_stored_in_order(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    done: list[tuple[int, int]] = []
    store_outputs(
        storage, _outputs(tmp_path), _settings(), on_stored=lambda n, total: done.append((n, total))
    )
    assert done == [(1, 3), (2, 3), (3, 3)]
    assert all(storage.exists(f"videos/k/{name}") for name in ("j.jpg", "j.sprites.jpg", "j.mp4"))


def test_a_video_that_cannot_be_stored_takes_the_thumbnail_and_spritesheet_with_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = LocalStorage(tmp_path / "store")
    (tmp_path / "store/videos/k/j.mp4").mkdir(parents=True)  # the video's key cannot be written
    done: list[int] = []
    with caplog.at_level(logging.WARNING), pytest.raises(StorageError, match=r"j\.mp4"):
        store_outputs(storage, _outputs(tmp_path), _settings(), on_stored=lambda n, _: done.append(n))
    assert done == [1, 2]  # the thumbnail and spritesheet were stored first...
    assert not storage.exists("videos/k/j.jpg") and not storage.exists(
        "videos/k/j.sprites.jpg"
    )  # ...and removed
    assert "upload of videos/k/j.mp4 failed (attempt 2)" in caplog.text
    assert "upload of videos/k/j.mp4 failed, giving up after 3 attempts" in caplog.text


def test_outputs_of_a_job_taken_over_meanwhile_are_left_to_the_new_run(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    (tmp_path / "store/videos/k/j.mp4").mkdir(parents=True)
    with pytest.raises(StorageError):
        store_outputs(storage, _outputs(tmp_path), _settings(), still_owned=lambda: False)
    assert storage.exists("videos/k/j.jpg")  # the run that owns the job now writes these same keys


def test_an_unreachable_s3_fails_after_the_configured_tries(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(
        storage_backend="s3",
        s3_endpoint_url=f"http://127.0.0.1:{free_port()}",
        s3_create_bucket=False,
        s3_access_key_id="testing",
        s3_secret_access_key="testing",
        s3_max_attempts=1,
    )
    started = time.monotonic()
    with caplog.at_level(logging.WARNING), pytest.raises(StorageError):
        store_outputs(S3Storage(settings), _outputs(tmp_path), settings)
    assert time.monotonic() - started < 10
    tries = re.findall(r"upload of videos/k/j\.jpg failed( \(attempt|, giving up)", caplog.text)
    assert len(tries) == 3  # two retries, then it gave up
    assert "removing outputs failed, giving up" in caplog.text
