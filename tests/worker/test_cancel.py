"""Cancel in the worker, in-process, on the embedded path (no Redis: the cancel request is read from the
job's row): the real tiny model stops mid-denoise, nothing is stored, and the next job runs normally."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from app.api_keys.models import ApiKey
from app.db import session_scope
from app.jobs import cancel
from tests.conftest import clear_caches, s3_client
from tests.jobs.served import committed_key
from tests.worker.committed import add_job, job_row


@pytest.fixture
def without_redis(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KINEMA_REDIS_URL", "")
    clear_caches()


def test_cancel_mid_denoise_stops_stores_nothing_and_the_next_job_runs(
    without_redis: None, settings_env: dict[str, str]
) -> None:
    from worker.execution import execute

    with committed_key("worker-cancel") as (key_id, _):
        long_id = add_job(key_id, num_inference_steps=400)
        asked: dict[str, Any] = {}

        def cancel_once_denoising() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                row = job_row(long_id)
                if row.phase == "denoising" and row.step >= 1:
                    with session_scope() as session:
                        key = session.get(ApiKey, key_id)
                        assert key is not None
                        job = cancel.cancel(session, key, long_id, lease_s=60)
                        asked.update(status=job.status, step=row.step)
                    return
                time.sleep(0.05)

        canceler = threading.Thread(target=cancel_once_denoising)
        canceler.start()
        execute(long_id)
        canceler.join(timeout=10)

        assert asked.get("status") == "in_progress", asked
        row = job_row(long_id)
        assert row.status == "canceled" and row.video_key is None and row.output_bytes is None
        assert row.phase == "denoising" and row.step < 400
        assert row.cancel_requested_at is not None and row.finished_at is not None
        # Without Redis the worker reads the row every 0.5 s: well inside the 2 s promise.
        assert (row.finished_at - row.cancel_requested_at).total_seconds() < 2.0

        # The same worker process takes the next job and finishes it.
        next_id = add_job(key_id)
        execute(next_id)
        after = job_row(next_id)
        assert after.status == "succeeded" and after.output_frames == 8

        s3 = s3_client(settings_env)
        listing = s3.list_objects_v2(Bucket=settings_env["KINEMA_S3_BUCKET"], Prefix=f"videos/{key_id}/")
        stored = {item["Key"].rsplit("/", 1)[1] for item in listing.get("Contents", [])}
        # Nothing of the canceled job.
        assert stored == {f"{next_id}.mp4", f"{next_id}.jpg", f"{next_id}.sprites.jpg"}
