"""The real app over real HTTP, served from a thread of the test process on the test's settings.

For what the in-process `client` cannot show: concurrent requests, each on its own database session
and connection, and streams read while other sessions commit. Rows are committed for real, so every
user of these helpers deletes the jobs it made (`committed_key` does on exit).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn
from sqlalchemy import delete, select

from app.api_keys import service as keys
from app.db import get_engine, session_scope
from app.jobs.models import IdempotencyKey, Job
from app.main import create_app
from tests.conftest import free_port


@contextmanager
def served_app() -> Iterator[str]:
    """The gateway on a free port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="served-app", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the served app did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        # Close the pool's connections now: concurrent requests opened many, and Postgres has a cap.
        get_engine().dispose()


@contextmanager
def committed_key(name: str = "served") -> Iterator[tuple[str, str]]:
    """A committed API key `(id, plaintext)`; on exit its jobs are deleted (the key row may stay: other
    features' rows may point at it, and an idle key changes nothing for other tests)."""
    with session_scope() as session:
        created = keys.create_key(session, name)
        key_id = created.row.id
    try:
        yield key_id, created.key
    finally:
        with session_scope() as session:
            jobs = select(Job.id).where(Job.api_key_id == key_id)
            session.execute(delete(IdempotencyKey).where(IdempotencyKey.job_id.in_(jobs)))
            session.execute(delete(Job).where(Job.api_key_id == key_id))
            session.commit()


def read_events(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """`(event name, job)` for each Server-Sent Event of a streamed response, as a browser splits them."""
    name, data = "message", []
    for line in response.iter_lines():
        if not line:
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[len("event:") :].strip()
        elif line.startswith("data:"):
            data.append(line[len("data:") :].strip())
