"""GET /jobs/{id}/events: the current state first, then changes, then the finished job, and the stream
ends; from Redis pub/sub when Redis is configured, from the job's row when it is not."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from app.db import session_scope, utcnow
from app.jobs.live import ProgressChannel, ProgressSnapshot
from app.jobs.models import Job
from app.jobs.service import new_job_id
from tests.conftest import clear_caches
from tests.jobs.served import committed_key, read_events, served_app


def _add_job(key_id: str, **values: Any) -> str:
    job_id = new_job_id()
    with session_scope() as session:
        session.add(
            Job(
                id=job_id,
                api_key_id=key_id,
                model="builtin:tiny-wan",
                prompt="a red ball",
                duration_s=1.0,
                width=96,
                height=64,
                fps=8,
                num_frames=8,
                seed=1,
                num_inference_steps=10,
                guidance_scale=5.0,
                **values,
            )
        )
        session.commit()
    return job_id


def _set(job_id: str, **values: Any) -> None:
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))
        session.commit()


def test_finished_job_streams_one_final_event_and_ends(client: Any, make_key: Any, make_job: Any) -> None:
    row, key = make_key()
    job = make_job(row, status="succeeded", phase="done", progress=100, finished_at=utcnow())
    with client.stream(
        "GET", f"/jobs/{job.id}/events", headers={"Authorization": f"Bearer {key}"}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(read_events(response))
    assert [(name, body["status"], body["id"]) for name, body in events] == [("status", "succeeded", job.id)]


def test_another_keys_job_is_404_before_any_stream(client: Any, make_key: Any, make_job: Any) -> None:
    owner, _ = make_key("owner")
    _, stranger = make_key("stranger")
    job = make_job(owner)
    response = client.get(f"/jobs/{job.id}/events", headers={"Authorization": f"Bearer {stranger}"})
    assert response.status_code == 404 and response.json()["error"]["param"] == "id"


@pytest.fixture
def quick_polls(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KINEMA_EVENTS_POLL_INTERVAL_S", "0.1")
    monkeypatch.setenv("KINEMA_REDIS_URL", "")
    clear_caches()


def test_without_redis_the_row_is_polled_until_the_job_ends(quick_polls: None) -> None:
    with committed_key("events-poll") as (key_id, key), served_app() as base_url:
        ahead = _add_job(key_id)
        job_id = _add_job(key_id)

        def worker() -> None:
            # What a worker does to the rows: the job ahead starts, then this one runs and succeeds.
            time.sleep(0.4)
            _set(ahead, status="in_progress")
            time.sleep(0.4)
            _set(job_id, status="in_progress", phase="denoising", progress=20, step=3, total_steps=10)
            for step, progress in ((6, 53), (9, 77)):
                time.sleep(0.4)
                _set(job_id, step=step, progress=progress)
            time.sleep(0.4)
            _set(job_id, status="succeeded", phase="done", progress=100, finished_at=utcnow())

        thread = threading.Thread(target=worker)
        http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        with http, http.stream("GET", f"/jobs/{job_id}/events") as response:
            assert response.status_code == 200
            thread.start()
            events = list(read_events(response))
        thread.join()

    names = [name for name, _ in events]
    jobs = [body for _, body in events]
    assert names[0] == "status" and jobs[0]["status"] == "queued" and jobs[0]["queue_position"] == 1
    # The job ahead started: its queue position moved up.
    assert any(job["status"] == "queued" and job["queue_position"] == 0 for job in jobs)
    running = [job for job in jobs if job["status"] == "in_progress"]
    assert [job["progress"] for job in running] == [20, 53, 77]
    assert names[-1] == "status" and jobs[-1]["status"] == "succeeded" and jobs[-1]["progress"] == 100


def test_with_redis_snapshots_stream_live_and_the_announcement_ends_it(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, redis_client: Any
) -> None:
    # A poll interval far beyond the test: only pub/sub can deliver these events in time.
    monkeypatch.setenv("KINEMA_EVENTS_POLL_INTERVAL_S", "60")
    clear_caches()
    channel = ProgressChannel(redis_client)
    with committed_key("events-redis") as (key_id, key), served_app() as base_url:
        job_id = _add_job(key_id, status="in_progress", phase="loading", attempts=1, heartbeat_at=utcnow())
        finish_at = time.time() + 30

        def worker() -> None:
            time.sleep(0.3)
            for step in range(1, 6):
                snapshot = ProgressSnapshot("in_progress", "denoising", 5 + step * 8, step, 10, finish_at)
                channel.publish(job_id, snapshot)
                time.sleep(0.05)
            _set(job_id, status="failed", error_code="generation_failed", error_message="boom")
            channel.announce(job_id, "failed")

        thread = threading.Thread(target=worker)
        started = time.monotonic()
        http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        with http, http.stream("GET", f"/jobs/{job_id}/events") as response:
            thread.start()
            events = list(read_events(response))
        elapsed = time.monotonic() - started
        thread.join()

    jobs = [body for _, body in events]
    assert [name for name, _ in events] == ["status"] + ["progress"] * 5 + ["status"]
    assert [job["step"] for job in jobs[1:-1]] == [1, 2, 3, 4, 5]
    progresses = [job["progress"] for job in jobs[1:-1]]
    assert progresses == sorted(progresses)
    assert all(25 <= job["eta_seconds"] <= 31 for job in jobs[1:-1])
    assert jobs[-1]["status"] == "failed" and jobs[-1]["error"]["code"] == "generation_failed"
    assert elapsed < 10


def test_eta_of_a_queued_job_counts_the_work_ahead(
    client: Any, make_key: Any, make_job: Any, db_session: Any
) -> None:
    from app.jobs.eta import record_timing

    row, key = make_key()
    # A model of its own, so timings other tests' runs recorded do not count: 1 s per denoising step
    # and 2 s of tail per megapixel-frame; these jobs are 0.5 megapixel-frames.
    record_timing(db_session, "test:eta", step_s_per_unit=1.0, tail_s_per_unit=2.0)
    size = {"model": "test:eta", "width": 250, "height": 250, "num_frames": 8, "num_inference_steps": 10}
    running = make_job(row, status="in_progress", expected_finish_at=utcnow() + timedelta(seconds=4), **size)
    ahead = make_job(row, **size)
    job = make_job(row, **size)
    headers = {"Authorization": f"Bearer {key}"}
    # Each job: 0.5 x (10 x 1 + 2) = 6 s. Ahead of `job`: 4 s left of the running one + 6 s, one worker.
    assert client.get(f"/jobs/{job.id}", headers=headers).json()["eta_seconds"] == pytest.approx(16, abs=1)
    assert client.get(f"/jobs/{ahead.id}", headers=headers).json()["eta_seconds"] == pytest.approx(10, abs=1)
    assert client.get(f"/jobs/{running.id}", headers=headers).json()["eta_seconds"] == pytest.approx(4, abs=1)
    # A slower run moves the averages 30% of the way: 1.3 s per step, so `ahead` takes 7.5 s itself.
    record_timing(db_session, "test:eta", step_s_per_unit=2.0, tail_s_per_unit=2.0)
    assert client.get(f"/jobs/{ahead.id}", headers=headers).json()["eta_seconds"] == pytest.approx(12, abs=1)


def test_a_submit_answers_with_the_queue_position_and_eta_a_poll_shows(
    client: Any, make_key: Any, db_session: Any
) -> None:
    """The 202 is counted inside the submit's transaction; a poll right after counts the same."""
    from app.config import get_settings
    from app.jobs.eta import record_timing

    model = get_settings().model_id
    _, key = make_key()
    record_timing(db_session, model, step_s_per_unit=1.0, tail_s_per_unit=2.0)
    headers = {"Authorization": f"Bearer {key}"}
    submitted = [client.post("/generate", headers=headers, json={"prompt": "a cat"}).json() for _ in range(2)]
    for job in submitted:
        polled = client.get(f"/jobs/{job['id']}", headers=headers).json()
        assert (job["model"], job["queue_position"]) == (model, polled["queue_position"])
        assert job["eta_seconds"] is not None
        assert job["eta_seconds"] == pytest.approx(polled["eta_seconds"], abs=1)
    first, second = submitted
    assert second["queue_position"] == first["queue_position"] + 1
    assert second["eta_seconds"] > first["eta_seconds"]
