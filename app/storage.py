"""Where videos live: S3-compatible object storage (boto3) or a local directory, behind one interface."""

from __future__ import annotations

import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from functools import lru_cache
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.config import Settings, get_settings


class StorageError(Exception):
    """The storage backend could not be reached or refused the operation."""


class Storage(ABC):
    """Objects addressed by key, e.g. `videos/<key_id>/<job_id>.mp4`."""

    @abstractmethod
    def put_file(self, key: str, path: Path, content_type: str) -> None:
        """Store the file at `path` under `key`; readers see the whole object or nothing."""

    @abstractmethod
    def get_file(self, key: str, path: Path) -> None:
        """Copy the object at `key` into the file `path` (the worker reads inputs and parent videos)."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether `key` holds an object."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; removing a missing key is not an error."""

    @abstractmethod
    def presigned_url(self, key: str, *, filename: str | None = None) -> str | None:
        """A time-limited URL a client can GET, or None when the API must stream the object itself."""

    @abstractmethod
    def local_path(self, key: str) -> Path | None:
        """The file behind `key` when the backend is a local directory."""

    @abstractmethod
    def check(self) -> None:
        """Raise StorageError unless the backend is reachable and writable."""


class LocalStorage(Storage):
    """A directory on disk: the embedded default."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise StorageError(f"key {key!r} escapes the storage directory")
        return path

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Copy next to the target, then rename: readers never see half a file.
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        except OSError as exc:  # a full or read-only disk is storage being unavailable, as for S3
            raise StorageError(f"writing {key} failed: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as out, path.open("rb") as src:
                shutil.copyfileobj(src, out, 1024 * 1024)
            os.replace(tmp, target)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise StorageError(f"writing {key} failed: {exc}") from exc
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get_file(self, key: str, path: Path) -> None:
        try:
            shutil.copyfile(self._path(key), path)
        except OSError as exc:
            raise StorageError(f"reading {key} failed: {exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"deleting {key} failed: {exc}") from exc

    def presigned_url(self, key: str, *, filename: str | None = None) -> str | None:
        return None

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".readyz-"):
                pass
        except OSError as exc:
            raise StorageError(f"storage directory {self.root} is not writable: {exc}") from exc


class S3Storage(Storage):
    """An S3-compatible bucket (AWS, MinIO, or moto's server in tests)."""

    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.s3_bucket
        self.expires_s = settings.presign_expires_s
        config = Config(
            retries={"mode": "standard", "max_attempts": settings.s3_max_attempts},
            connect_timeout=5,
            read_timeout=60,
            signature_version="s3v4",
            s3={"addressing_style": "path"},
        )
        common: dict[str, Any] = {
            "region_name": settings.s3_region,
            "aws_access_key_id": settings.s3_access_key_id,
            "aws_secret_access_key": settings.s3_secret_access_key,
            "config": config,
        }
        self.client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, **common)
        public = settings.s3_public_endpoint_url
        # Presigned URLs are signed for the host the client will use, which may differ from ours.
        self.presign_client = boto3.client("s3", endpoint_url=public, **common) if public else self.client
        if settings.s3_create_bucket:
            self.ensure_bucket(settings.s3_region)

    def ensure_bucket(self, region: str) -> None:
        """Create the bucket if it does not exist."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in {"404", "NoSuchBucket", "NotFound"}:
                raise StorageError(f"cannot reach bucket {self.bucket!r}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot reach S3: {exc}") from exc
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self.client.create_bucket(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise StorageError(f"cannot create bucket {self.bucket!r}: {exc}") from exc

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        try:
            # upload_file uses multipart for large files; S3 shows the object only once it is complete.
            self.client.upload_file(str(path), self.bucket, key, ExtraArgs={"ContentType": content_type})
        except (BotoCoreError, ClientError, boto3.exceptions.S3UploadFailedError) as exc:
            raise StorageError(f"upload of {key} failed: {exc}") from exc

    def get_file(self, key: str, path: Path) -> None:
        try:
            self.client.download_file(self.bucket, key, str(path))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"download of {key} failed: {exc}") from exc

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise StorageError(str(exc)) from exc
        except BotoCoreError as exc:
            raise StorageError(str(exc)) from exc

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(str(exc)) from exc

    def presigned_url(self, key: str, *, filename: str | None = None) -> str | None:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        url: str = self.presign_client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=self.expires_s
        )
        return url

    def local_path(self, key: str) -> Path | None:
        return None

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"bucket {self.bucket!r} is not reachable: {exc}") from exc


def make_storage(settings: Settings) -> Storage:
    """The backend the settings name."""
    if settings.storage_backend == "s3":
        return S3Storage(settings)
    return LocalStorage(settings.effective_storage_dir)


@lru_cache
def get_storage() -> Storage:
    """The process's storage backend."""
    return make_storage(get_settings())
