"""A live deployment for end-to-end tests: `kinema serve` + `kinema worker` on Postgres, Redis, moto S3."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.harness import Service, clean_env, create_key, start, wait_ready


@pytest.fixture(scope="session")
def live(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """API and one worker process (prefork, concurrency 1: the production shape)."""
    logs = tmp_path_factory.mktemp("live-logs")
    port = free_port()
    # A queue of its own: in-process tests count what lands on the shared one.
    env = clean_env(
        {
            **service_env,
            "KINEMA_QUEUE_NAME": f"kinema.live.{uuid.uuid4().hex[:8]}",
            "KINEMA_WEBHOOK_QUEUE_NAME": f"kinema.live.webhooks.{uuid.uuid4().hex[:8]}",
        }
    )
    worker = start("worker", ["worker", "--concurrency", "1", "--loglevel", "INFO"], env, logs)
    api = start("api", ["serve", "--port", str(port), "--log-level", "warning"], env, logs)
    service = Service(base_url=f"http://127.0.0.1:{port}", env=env, processes=[worker, api])
    try:
        wait_ready(service.base_url, service.processes)
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def live_key(live: Service) -> str:
    return create_key(live.env)


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    return tmp_path
