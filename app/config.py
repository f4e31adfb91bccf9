"""Settings: one object, read from `KINEMA_*` environment variables (and an optional `.env`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_HOME = Path(".kinema")


class Settings(BaseSettings):
    """Everything a deployment configures. Defaults are the embedded, no-server set-up."""

    model_config = SettingsConfigDict(env_prefix="KINEMA_", env_file=".env", extra="ignore")

    # Where the embedded defaults keep their files (SQLite database, broker, videos, model cache).
    home: Path = DEFAULT_HOME

    # Postgres in production (postgresql+psycopg://...); SQLite for the embedded default.
    database_url: str = ""
    # Celery broker: redis://... in production; a kombu SQLite transport needs no server.
    broker_url: str = ""
    # Live progress and (later) rate limits; empty disables the Redis progress channel.
    redis_url: str = ""
    queue_name: str = "kinema.generate"
    # Redis transport: how long an unacknowledged task waits before redelivery.
    broker_visibility_timeout_s: int = 3600

    storage_backend: Literal["local", "s3"] = "local"
    storage_dir: Path | None = None
    s3_endpoint_url: str | None = None
    # What presigned URLs point at, when clients reach S3 by another name than the API does.
    s3_public_endpoint_url: str | None = None
    s3_bucket: str = "kinema"
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_create_bucket: bool = True
    presign_expires_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600)

    model_id: str = "builtin:tiny-wan"
    model_cache_dir: Path | None = None

    max_duration_s: int = Field(default=60, ge=1)
    max_width: int = 1920
    max_height: int = 1920
    max_pixels: int = 1920 * 1080
    max_prompt_length: int = Field(default=2000, ge=1)
    max_steps: int = 100
    max_fps: int = 60

    # The public URL of the API, for links in responses; empty: the URL each request came in on.
    api_base_url: str = ""

    # Worker: a job whose heartbeat is older than this is taken over by a redelivered task.
    job_lease_s: int = Field(default=60, ge=2)
    progress_write_interval_s: float = 0.25
    watermark_text: str = "AI-generated"
    watermark_enabled: bool = True

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'kinema.db'}"

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.home / 'broker.db'}"

    @property
    def effective_storage_dir(self) -> Path:
        return (self.storage_dir or self.home / "storage").expanduser().resolve()

    @property
    def effective_model_cache_dir(self) -> Path:
        return (self.model_cache_dir or self.home / "models").expanduser().resolve()


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
