"""Health probes, and what a submit does when the broker is down."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from app.jobs.models import Job
from tests.conftest import clear_caches, free_port


def test_healthz_and_readyz(client: Any) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok", "storage": "ok"}}


@pytest.fixture
def broker_down(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KINEMA_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    clear_caches()


def test_readyz_names_the_broker_when_it_is_down(broker_down: None, client: Any) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok" and body["checks"]["broker"] != "ok"


def test_submit_with_broker_down_is_503_and_the_job_is_failed_not_lost(
    broker_down: None, client: Any, make_key: Any, db_session: Any
) -> None:
    row, key = make_key()
    response = client.post("/generate", headers={"Authorization": f"Bearer {key}"}, json={"prompt": "a cat"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "queue_unavailable"
    job = db_session.scalar(select(Job).where(Job.api_key_id == row.id))
    assert job is not None and job.status == "failed" and job.error_code == "queue_unavailable"
