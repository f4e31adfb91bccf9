"""Polling, listing and downloading jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from app.storage import get_storage


def test_poll_shows_queue_position_in_submission_order(client: Any, make_key: Any, make_job: Any) -> None:
    row, key = make_key()
    first, second = make_job(row), make_job(row)
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get(f"/jobs/{first.id}", headers=headers).json()["queue_position"] == 0
    assert client.get(f"/jobs/{second.id}", headers=headers).json()["queue_position"] == 1


def test_failed_job_reports_its_error(client: Any, make_key: Any, make_job: Any) -> None:
    row, key = make_key()
    job = make_job(row, status="failed", error_code="generation_failed", error_message="boom")
    body = client.get(f"/jobs/{job.id}", headers={"Authorization": f"Bearer {key}"}).json()
    assert body["status"] == "failed"
    assert body["error"] == {"code": "generation_failed", "message": "boom"}
    assert body["output"] is None and body["queue_position"] is None


def test_list_is_newest_first_with_cursor_pages_and_status_filter(
    client: Any, make_key: Any, make_job: Any
) -> None:
    row, key = make_key()
    jobs = [make_job(row, status="succeeded" if i % 2 else "queued") for i in range(5)]
    headers = {"Authorization": f"Bearer {key}"}
    page = client.get("/jobs", params={"limit": 2}, headers=headers).json()
    seen = [j["id"] for j in page["data"]]
    while page["has_more"]:
        page = client.get("/jobs", params={"limit": 2, "after": page["next_cursor"]}, headers=headers).json()
        seen += [j["id"] for j in page["data"]]
    assert seen == [j.id for j in reversed(jobs)]
    succeeded = client.get("/jobs", params={"status": "succeeded"}, headers=headers).json()["data"]
    assert [j["id"] for j in succeeded] == [jobs[3].id, jobs[1].id]
    bad = client.get("/jobs", params={"status": "done"}, headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "status"
    bad = client.get("/jobs", params={"limit": 0}, headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"


def test_download_before_success_is_409(client: Any, make_key: Any, make_job: Any) -> None:
    row, key = make_key()
    job = make_job(row)
    response = client.get(f"/jobs/{job.id}/video", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "output_not_ready"


def test_download_redirects_to_a_presigned_s3_url(
    client: Any, make_key: Any, make_job: Any, tmp_path: Path
) -> None:
    row, key = make_key()
    payload = tmp_path / "v.mp4"
    payload.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    video_key = f"videos/{row.id}/test.mp4"
    get_storage().put_file(video_key, payload, "video/mp4")
    job = make_job(row, status="succeeded", video_key=video_key, thumbnail_key=video_key)
    response = client.get(
        f"/jobs/{job.id}/video", headers={"Authorization": f"Bearer {key}"}, follow_redirects=False
    )
    assert response.status_code == 302
    location = response.headers["location"]
    assert "X-Amz-Signature=" in location and "X-Amz-Expires=3600" in location
    fetched = httpx.get(location)
    assert fetched.status_code == 200
    assert fetched.content == payload.read_bytes()
    assert fetched.headers["content-type"] == "video/mp4"
