"""GET /metrics: requests by route and status, jobs by status, queue depths; token; several processes."""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete

from app.api_keys import service as keys
from app.config import get_settings
from app.db import session_scope
from app.jobs.models import Job
from app.jobs.service import new_job_id
from app.queue import enqueue_generation
from tests.conftest import free_port
from tests.e2e.harness import KINEMA, clean_env, wait_ready


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text page, by (name, labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


def delta(before: str, after: str, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_requests_are_counted_by_route_template_and_status(client: Any, make_key: Any) -> None:
    _, key = make_key()
    headers = {"Authorization": f"Bearer {key}"}
    route = {"method": "GET", "route": "/jobs/{job_id}"}
    before = client.get("/metrics").text
    for job_id in ("video_a", "video_b", "video_c"):
        assert client.get(f"/jobs/{job_id}", headers=headers).status_code == 404
    client.get("/jobs/video_a")  # 401
    client.get("/no/such/page")
    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    counted = "kinema_http_requests_total"
    assert delta(before, after.text, counted, **route, status="404") == 3
    assert delta(before, after.text, counted, **route, status="401") == 1
    assert delta(before, after.text, counted, method="GET", route="<unmatched>", status="404") == 1
    # Raw paths never become labels.
    assert "video_a" not in after.text
    assert delta(before, after.text, "kinema_http_request_duration_seconds_count", **route) == 4


@pytest.fixture
def committed_jobs(settings_env: dict[str, str]) -> Iterator[list[str]]:
    """Jobs committed for real (the scrape reads the database on its own connection): 2 failed, 1 queued."""
    with session_scope() as session:
        key = keys.create_key(session, "metrics").row
        rows = [
            Job(
                id=new_job_id(),
                api_key_id=key.id,
                model="builtin:tiny-wan",
                prompt="p",
                duration_s=1,
                width=64,
                height=64,
                fps=8,
                num_frames=8,
                seed=1,
                num_inference_steps=2,
                guidance_scale=5,
                status=status,
            )
            for status in ("failed", "failed", "queued")
        ]
        session.add_all(rows)
        session.commit()
        ids = [row.id for row in rows]
    yield ids
    with session_scope() as session:
        session.execute(delete(Job).where(Job.id.in_(ids)))
        session.commit()


def test_jobs_by_status_are_read_from_the_database_at_scrape_time(
    client: Any, committed_jobs: list[str]
) -> None:
    page = client.get("/metrics").text
    with session_scope() as session:
        session.execute(delete(Job).where(Job.id.in_(committed_jobs[:1])))
        session.commit()
    later = client.get("/metrics").text
    assert delta(later, page, "kinema_jobs", status="failed") == 1
    assert value(page, "kinema_jobs", status="queued") >= 1
    every_status = {("kinema_jobs", frozenset({("status", s)})) for s in ("succeeded", "canceled")}
    assert every_status <= samples(later).keys()
    assert value(later, "kinema_scrape_source_up", source="database") == 1


def test_queue_depth_is_the_brokers(client: Any, redis_client: Any) -> None:
    queue = get_settings().queue_name
    redis_client.delete(queue)
    try:
        for _ in range(3):
            enqueue_generation(new_job_id())
        page = client.get("/metrics").text
        assert value(page, "kinema_queue_depth", queue=queue) == 3
        assert value(page, "kinema_queue_depth", queue=get_settings().webhook_queue_name) == 0
        assert value(page, "kinema_scrape_source_up", source="broker") == 1
    finally:
        redis_client.delete(queue)


def test_a_metrics_token_guards_the_page(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app

    monkeypatch.setenv("KINEMA_METRICS_TOKEN", "s3cret-scrape")
    get_settings.cache_clear()
    with TestClient(create_app()) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
        good = client.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"})
        assert good.status_code == 200 and "kinema_http_requests_total" in good.text
        assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_several_api_processes_add_up(service_env: dict[str, str], tmp_path: Path) -> None:
    """`kinema serve --workers 2`: each scrape, whichever process answers, counts every process's requests."""
    port = free_port()
    env = clean_env({**service_env, "KINEMA_HOME": str(tmp_path), "KINEMA_QUEUE_NAME": uuid.uuid4().hex})
    log = (tmp_path / "serve.log").open("wb")
    command = [KINEMA, "serve", "--port", str(port), "--workers", "2"]
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, [], timeout=60)
        for _ in range(40):
            # A new connection each time, so both processes get some.
            assert httpx.get(f"{base}/healthz", headers={"Connection": "close"}).status_code == 200
        totals = set()
        for _ in range(6):
            page = httpx.get(f"{base}/metrics", headers={"Connection": "close"}).text
            totals.add(
                value(page, "kinema_http_requests_total", method="GET", route="/healthz", status="200")
            )
        # Whichever process answered, the count is all 40 (wait_ready polled /readyz, not /healthz).
        assert totals == {40.0}, totals
        assert (tmp_path / "metrics" / f"api-{port}").is_dir()
        assert len(list((tmp_path / "metrics" / f"api-{port}").glob("counter_*.db"))) == 2
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()
    assert re.search(rb'"message": "Started server process', (tmp_path / "serve.log").read_bytes())
