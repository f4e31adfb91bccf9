"""Both storage backends behind one interface; S3 is moto's server over HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app.config import Settings
from app.storage import LocalStorage, S3Storage, StorageError
from tests.conftest import free_port


def _s3_settings(endpoint: str, bucket: str) -> Settings:
    return Settings(
        storage_backend="s3",
        s3_endpoint_url=endpoint,
        s3_bucket=bucket,
        s3_access_key_id="testing",
        s3_secret_access_key="testing",
        presign_expires_s=120,
    )


def test_s3_creates_bucket_stores_presigns_and_deletes(s3_endpoint: str, tmp_path: Path) -> None:
    storage = S3Storage(_s3_settings(s3_endpoint, "storage-test"))
    storage.check()
    source = tmp_path / "a.mp4"
    source.write_bytes(b"x" * 10_000)
    storage.put_file("videos/k/a.mp4", source, "video/mp4")
    assert storage.exists("videos/k/a.mp4")
    assert storage.local_path("videos/k/a.mp4") is None
    url = storage.presigned_url("videos/k/a.mp4", filename="a.mp4")
    assert url is not None and "X-Amz-Expires=120" in url
    response = httpx.get(url)
    assert response.status_code == 200 and response.content == source.read_bytes()
    assert 'filename="a.mp4"' in response.headers["content-disposition"]
    storage.delete("videos/k/a.mp4")
    assert not storage.exists("videos/k/a.mp4")
    # A second instance finds the bucket there already.
    S3Storage(_s3_settings(s3_endpoint, "storage-test")).check()


def test_s3_presigned_urls_can_name_a_public_endpoint(s3_endpoint: str) -> None:
    settings = _s3_settings(s3_endpoint, "storage-public")
    settings.s3_public_endpoint_url = "http://videos.example.test:9000"
    url = S3Storage(settings).presigned_url("videos/x.mp4")
    assert url is not None and url.startswith("http://videos.example.test:9000/storage-public/videos/x.mp4?")


def test_s3_unreachable_is_a_storage_error() -> None:
    settings = _s3_settings(f"http://127.0.0.1:{free_port()}", "nope")
    settings.s3_create_bucket = False
    storage = S3Storage(settings)
    with pytest.raises(StorageError):
        storage.check()


def test_local_backend_writes_whole_files_and_refuses_escapes(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    storage.check()
    source = tmp_path / "a.jpg"
    source.write_bytes(b"jpeg")
    storage.put_file("videos/k/a.jpg", source, "image/jpeg")
    path = storage.local_path("videos/k/a.jpg")
    assert path is not None and path.read_bytes() == b"jpeg"
    assert storage.presigned_url("videos/k/a.jpg") is None
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".upload-")]
    storage.delete("videos/k/a.jpg")
    assert not storage.exists("videos/k/a.jpg")
    storage.delete("videos/k/a.jpg")  # deleting twice is fine
    with pytest.raises(StorageError):
        storage.put_file("../outside.jpg", source, "image/jpeg")
