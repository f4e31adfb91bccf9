"""Presigned download URLs are signed for a limited window: the setting's, counted from signing.

S3 and MinIO refuse a URL once `X-Amz-Date + X-Amz-Expires` has passed; moto (the test S3) does not
enforce it, so these tests read the signed window itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from app.config import get_settings
from app.storage import S3Storage, get_storage


def signed_window(url: str) -> tuple[datetime, datetime]:
    """When a presigned URL was signed, and when it stops working."""
    query = {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}
    assert query["X-Amz-Signature"]  # the window is part of what is signed: it cannot be stretched
    signed = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return signed, signed + timedelta(seconds=int(query["X-Amz-Expires"]))


def test_a_short_expiry_gives_a_url_that_dies_in_seconds(settings_env: dict[str, str]) -> None:
    storage = get_storage()
    assert isinstance(storage, S3Storage)
    storage.expires_s = 1
    signed, expires = signed_window(storage.presigned_url("videos/k/a.mp4"))
    now = datetime.now(UTC)
    assert abs((signed - now).total_seconds()) < 5
    assert expires - signed == timedelta(seconds=1)


def test_api_redirects_carry_the_configured_expiry(
    settings_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    client: Any,
    make_key: Any,
    make_job: Any,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("KINEMA_PRESIGN_EXPIRES_S", "90")
    get_settings.cache_clear()
    get_storage.cache_clear()
    row, key = make_key()
    payload = tmp_path / "v.mp4"
    payload.write_bytes(b"not really a video")
    video_key = f"videos/{row.id}/short.mp4"
    get_storage().put_file(video_key, payload, "video/mp4")
    job = make_job(row, status="succeeded", video_key=video_key, thumbnail_key=video_key)
    response = client.get(
        f"/jobs/{job.id}/video", headers={"Authorization": f"Bearer {key}"}, follow_redirects=False
    )
    assert response.status_code == 302
    signed, expires = signed_window(response.headers["location"])
    assert expires - signed == timedelta(seconds=90)
