"""Shared fixtures: a fresh Postgres database per run, Redis, moto's S3 server over HTTP, settings.

Postgres and Redis are real servers (URLs below, overridable); S3 is moto's standalone server, reached
over HTTP by boto3 exactly as production reaches MinIO or AWS.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

POSTGRES_URL = os.environ.get("KINEMA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("KINEMA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
HOW_TO_START = "Start them with `docker compose up -d postgres redis` (see README, Tests)."


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = [
        f"{name} at {url}"
        for name, url, port in (("Postgres", POSTGRES_URL, 5432), ("Redis", REDIS_URL, 6379))
        if not _reachable(url, port)
    ]
    if missing:
        pytest.exit(f"The test suite needs {' and '.join(missing)}, which did not answer. {HOW_TO_START}", 3)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sqlalchemy_url(url: str) -> str:
    """The psycopg 3 SQLAlchemy URL for a plain postgresql:// URL."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@contextmanager
def new_database(prefix: str) -> Iterator[str]:
    """A database of its own on the Postgres server, migrated to head, dropped on exit (for tests that
    sweep or break a whole database and must not see, or touch, other tests' committed rows)."""
    import migrations

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = sqlalchemy_url(POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}")
        migrations.upgrade(url)
        yield url
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A new database on the Postgres server, migrated to head, dropped after the run."""
    import migrations

    name = f"kinema_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = sqlalchemy_url(POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}")
    migrations.upgrade(url)
    yield url
    from app.db import get_engine

    get_engine.cache_clear()
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free port (no boto3 patching: requests go over HTTP)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def service_env(pg_url: str, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """KINEMA_* settings for a deployment on Postgres, Redis and S3, with a queue of its own."""
    home = tmp_path_factory.mktemp("kinema-home")
    return {
        "KINEMA_HOME": str(home),
        "KINEMA_DATABASE_URL": pg_url,
        "KINEMA_BROKER_URL": REDIS_URL,
        "KINEMA_REDIS_URL": REDIS_URL,
        "KINEMA_QUEUE_NAME": f"kinema.test.{uuid.uuid4().hex[:8]}",
        "KINEMA_STORAGE_BACKEND": "s3",
        "KINEMA_S3_ENDPOINT_URL": s3_endpoint,
        "KINEMA_S3_BUCKET": f"kinema-test-{uuid.uuid4().hex[:8]}",
        "KINEMA_S3_ACCESS_KEY_ID": "testing",
        "KINEMA_S3_SECRET_ACCESS_KEY": "testing",
        "KINEMA_MODEL_CACHE_DIR": str(home / "models"),
        # The fast random-weight model; the shipped default (builtin:kinema-shapes) has tests of its own.
        "KINEMA_MODEL_ID": "builtin:tiny-wan",
        "KINEMA_JOB_LEASE_S": "3",
        # End-to-end tests poll at 20 Hz; rate-limit tests give their keys limits of their own.
        "KINEMA_DEFAULT_RATE_LIMIT_RPM": "0",
        # Webhook receivers in tests listen on 127.0.0.1; retries come fast.
        "KINEMA_WEBHOOK_QUEUE_NAME": f"kinema.test.webhooks.{uuid.uuid4().hex[:8]}",
        "KINEMA_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
        "KINEMA_WEBHOOK_RETRY_SCHEDULE_S": "0.2,0.2,0.2",
        # A storage outage fails a job after two quick tries, not minutes of backoff (see tests/faults).
        "KINEMA_STORAGE_RETRY_ATTEMPTS": "2",
        "KINEMA_STORAGE_RETRY_BACKOFF_S": "0.1",
        "KINEMA_S3_MAX_ATTEMPTS": "2",
    }


def clear_caches() -> None:
    """Forget every cached settings-derived object so new env vars take effect."""
    from app.api_keys.cache import get_key_cache
    from app.config import get_settings
    from app.db import get_engine, get_sessionmaker
    from app.jobs.eta import forget_timings
    from app.jobs.live import get_progress_channel
    from app.limits.rate import get_rate_limiter
    from app.queue import get_celery
    from app.storage import get_storage

    if get_engine.cache_info().currsize:
        # Close its pooled connections now: a dropped engine keeps them open until garbage collection,
        # and a whole run would pile up Postgres's max_connections.
        get_engine().dispose()
    for cached in (get_settings, get_engine, get_sessionmaker, get_storage, get_celery, get_progress_channel):
        cached.cache_clear()
    get_rate_limiter.cache_clear()
    if get_key_cache.cache_info().currsize:
        get_key_cache().close()
    get_key_cache.cache_clear()
    forget_timings()


@pytest.fixture
def settings_env(service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The service settings in this process's environment (for in-process API and worker tests)."""
    for name in [n for n in os.environ if n.startswith("KINEMA_") and not n.startswith("KINEMA_TEST_")]:
        monkeypatch.delenv(name)
    for name, value in service_env.items():
        monkeypatch.setenv(name, value)
    clear_caches()
    yield service_env
    clear_caches()


@pytest.fixture
def db_session(settings_env: dict[str, str]) -> Iterator[Any]:
    """A session whose work, commits included, is rolled back after the test."""
    from sqlalchemy.orm import Session

    from app.db import get_engine

    connection = get_engine().connect()
    outer = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        connection.close()


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def tmp_home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def make_key(db_session: Any) -> Any:
    """Factory: `make_key(name, **create_key options) -> (row, plaintext key)`, through the service."""
    from app.api_keys import service

    def make(name: str = "test", **options: Any) -> tuple[Any, str]:
        created = service.create_key(db_session, name, **options)
        return created.row, created.key

    return make


@pytest.fixture
def make_job(db_session: Any) -> Any:
    """Factory: a job row for `key_row` with sensible defaults, committed (inside the test's rollback)."""
    from app.jobs.models import Job
    from app.jobs.service import new_job_id

    def make(key_row: Any, **values: Any) -> Job:
        fields: dict[str, Any] = {
            "id": new_job_id(),
            "api_key_id": key_row.id,
            "model": "builtin:tiny-wan",
            "prompt": "a red ball rolling across a wooden table",
            "duration_s": 2.0,
            "width": 256,
            "height": 256,
            "fps": 8,
            "num_frames": 16,
            "seed": 1,
            "num_inference_steps": 4,
            "guidance_scale": 5.0,
        }
        fields.update(values)
        job = Job(**fields)
        db_session.add(job)
        db_session.commit()
        return job

    return make


@pytest.fixture
def client(db_session: Any) -> Iterator[Any]:
    """The app in-process, its requests on the test's rolled-back session."""
    from fastapi.testclient import TestClient

    from app.deps import get_session
    from app.main import create_app

    app = create_app()
    app.dependency_overrides[get_session] = lambda: db_session
    with TestClient(app) as test_client:
        yield test_client


def s3_client(env: dict[str, str]) -> Any:
    """A boto3 S3 client for the deployment whose KINEMA_* settings are `env` (moto's server)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=env["KINEMA_S3_ENDPOINT_URL"],
        aws_access_key_id=env["KINEMA_S3_ACCESS_KEY_ID"],
        aws_secret_access_key=env["KINEMA_S3_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
