"""POST /jobs/{id}/cancel as a caller sees it: queued jobs stop at once and never run, running jobs get a
cancel request their worker reads, finished jobs cannot be canceled, other keys' jobs do not exist."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from app.db import utcnow
from app.jobs import runs
from app.jobs.runs import ClaimResult


def _cancel(client: Any, key: str, job_id: str) -> Any:
    return client.post(f"/jobs/{job_id}/cancel", headers={"Authorization": f"Bearer {key}"})


def test_queued_job_is_canceled_at_once_and_never_runs(
    client: Any, make_key: Any, make_job: Any, db_session: Any
) -> None:
    row, key = make_key()
    job = make_job(row)
    response = _cancel(client, key, job.id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "canceled" and body["finished_at"] and body["cancel_requested_at"]
    assert body["queue_position"] is None and body["eta_seconds"] is None
    # The task is still on the queue: when a worker gets it, the claim finds nothing to run.
    result, run = runs.claim(db_session, job.id, worker="w:1", lease_s=60)
    assert (result, run) == (ClaimResult.GONE, None)
    db_session.refresh(job)
    assert (job.status, job.attempts, job.started_at) == ("canceled", 0, None)


def test_running_job_gets_a_cancel_request_and_the_redis_flag(
    client: Any, make_key: Any, make_job: Any, db_session: Any, redis_client: Any
) -> None:
    row, key = make_key()
    job = make_job(row)
    result, _ = runs.claim(db_session, job.id, worker="w:1", lease_s=60)
    assert result is ClaimResult.CLAIMED
    response = _cancel(client, key, job.id)
    assert response.status_code == 200, response.text
    body = response.json()
    # Still running: its worker stops at the next denoising step and marks it canceled.
    assert body["status"] == "in_progress" and body["cancel_requested_at"] and body["finished_at"] is None
    assert redis_client.exists(f"kinema:job:{job.id}:cancel") == 1
    assert runs.cancel_requested(db_session, job.id)
    # Asking twice keeps the first request's time.
    again = _cancel(client, key, job.id).json()
    assert again["cancel_requested_at"] == body["cancel_requested_at"]
    assert (
        client.get(f"/jobs/{job.id}", headers={"Authorization": f"Bearer {key}"}).json()[
            "cancel_requested_at"
        ]
        == body["cancel_requested_at"]
    )


def test_worker_marks_the_requested_job_canceled_and_loses_it(
    client: Any, make_key: Any, make_job: Any, db_session: Any
) -> None:
    row, key = make_key()
    job = make_job(row)
    _, run = runs.claim(db_session, job.id, worker="w:1", lease_s=60)
    assert run is not None
    _cancel(client, key, job.id)
    assert runs.cancel(db_session, run)
    body = client.get(f"/jobs/{job.id}", headers={"Authorization": f"Bearer {key}"}).json()
    assert body["status"] == "canceled" and body["finished_at"] and body["output"] is None
    # The run can write nothing more: not success, not progress.
    assert not runs.succeed(db_session, run, video_key="videos/x.mp4")
    assert not runs.heartbeat(db_session, run, progress=50)


def test_running_job_whose_worker_is_gone_is_canceled_at_once(
    client: Any, make_key: Any, make_job: Any, db_session: Any
) -> None:
    row, key = make_key()
    job = make_job(row, status="in_progress", attempts=1, heartbeat_at=utcnow() - timedelta(minutes=5))
    body = _cancel(client, key, job.id).json()
    assert body["status"] == "canceled"


@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_finished_job_is_409_job_already_finished(
    client: Any, make_key: Any, make_job: Any, status: str
) -> None:
    row, key = make_key()
    job = make_job(row, status=status, finished_at=utcnow())
    response = _cancel(client, key, job.id)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "job_already_finished" and error["param"] == "id"
    assert status in error["message"]


def test_canceling_a_canceled_job_again_returns_it(client: Any, make_key: Any, make_job: Any) -> None:
    row, key = make_key()
    job = make_job(row)
    first = _cancel(client, key, job.id).json()
    second = _cancel(client, key, job.id)
    assert second.status_code == 200 and second.json()["finished_at"] == first["finished_at"]


def test_another_keys_job_is_404_and_untouched(
    client: Any, make_key: Any, make_job: Any, db_session: Any
) -> None:
    owner, _ = make_key("owner")
    _, stranger = make_key("stranger")
    job = make_job(owner)
    response = _cancel(client, stranger, job.id)
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found_error"
    db_session.refresh(job)
    assert job.status == "queued" and job.cancel_requested_at is None
    assert _cancel(client, stranger, "video_nope").status_code == 404
