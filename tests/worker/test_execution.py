"""A worker run in-process: the real tiny model, Postgres, Redis progress and moto's S3 server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.api_keys import service as keys
from app.db import session_scope
from app.jobs.runs import ClaimResult
from tests.conftest import clear_caches, free_port, s3_client
from tests.e2e.harness import probe_mp4
from tests.worker.committed import add_job, job_row


@pytest.fixture
def committed_job(settings_env: dict[str, str]) -> Iterator[Any]:
    """Factory for job rows committed for real (the worker reads them with its own sessions)."""

    def make(**values: Any) -> str:
        with session_scope() as session:
            key_id = keys.create_key(session, "worker-test").row.id
        return add_job(key_id, **values)

    yield make


def test_execute_writes_the_video_and_marks_success(
    committed_job: Any, settings_env: dict[str, str], redis_client: Any, tmp_path: Path
) -> None:
    from worker.execution import execute

    job_id = committed_job()
    assert execute(job_id) is ClaimResult.CLAIMED
    row = job_row(job_id)
    assert (row.status, row.progress, row.phase, row.attempts) == ("succeeded", 100, "done", 1)
    assert (row.output_frames, row.output_duration_s) == (8, pytest.approx(1.0))
    s3 = s3_client(settings_env)
    path = tmp_path / "v.mp4"
    s3.download_file(settings_env["KINEMA_S3_BUCKET"], row.video_key, str(path))
    assert path.stat().st_size == row.output_bytes
    probe = probe_mp4(path)
    assert (probe.width, probe.height, probe.frames) == (96, 64, 8)
    # The last live snapshot in Redis is the end of the upload.
    snapshot = json.loads(redis_client.get(f"kinema:job:{job_id}:progress"))
    assert snapshot["phase"] == "uploading" and 97 <= snapshot["progress"] <= 99
    # Delivered again: the job is finished, nothing runs.
    assert execute(job_id) is ClaimResult.GONE


def test_storage_down_fails_the_job_with_storage_unavailable(
    committed_job: Any, settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.execution import execute

    job_id = committed_job()
    monkeypatch.setenv("KINEMA_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("KINEMA_S3_CREATE_BUCKET", "false")
    clear_caches()
    execute(job_id)
    row = job_row(job_id)
    assert row.status == "failed" and row.error_code == "storage_unavailable"
    assert row.video_key is None


def test_model_that_cannot_load_fails_the_job(committed_job: Any, tmp_path: Path) -> None:
    from worker.execution import execute

    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model_index.json").write_text('{"_class_name": "WanPipeline"}')
    job_id = committed_job(model=str(broken))
    execute(job_id)
    row = job_row(job_id)
    assert row.status == "failed" and row.error_code == "generation_failed"
    assert row.error_message
