"""Admission at submit: the concurrency limit holds while a submit leaves the key's row as it is
(`last_used_at` is kept to the minute), on Postgres and on SQLite (the embedded default)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

import migrations
from app.api_keys import service as keys
from app.api_keys.models import ApiKey
from app.config import get_settings
from app.db import make_engine
from app.errors import RateLimited
from app.jobs import service
from app.jobs.models import Job
from app.jobs.parameters import resolve
from app.jobs.schemas import GenerateRequest
from tests.conftest import clear_caches


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _submit(client: Any, key: str) -> Any:
    return client.post("/generate", headers=_auth(key), json={"prompt": "a cat", "duration": 1})


def _last_used(session: Session, key_id: str) -> datetime | None:
    return session.scalar(select(ApiKey.last_used_at).where(ApiKey.id == key_id))


def test_a_limited_key_is_admitted_up_to_its_limit_and_its_use_noted_once_a_minute(
    client: Any, make_key: Any, db_session: Session
) -> None:
    row, key = make_key(max_concurrent_jobs=2, rate_limit_rpm=100)
    first = _submit(client, key)
    used = _last_used(db_session, row.id)
    second = _submit(client, key)
    refused = _submit(client, key)
    assert (first.status_code, second.status_code, refused.status_code) == (202, 202, 429)
    assert refused.json()["error"]["code"] == "concurrency_limit_exceeded"
    assert used is not None and datetime.now(UTC) - used < timedelta(minutes=1)
    assert _last_used(db_session, row.id) == used  # the second submit did not rewrite the key's row


@pytest.mark.parametrize(
    "limits", [{"max_concurrent_jobs": 5}, {"max_concurrent_jobs": 0, "monthly_quota_s": 0}]
)
def test_a_use_older_than_a_minute_is_noted_again(
    client: Any, make_key: Any, db_session: Session, limits: dict[str, int]
) -> None:
    row, key = make_key(rate_limit_rpm=100, **limits)
    assert _submit(client, key).status_code == 202
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    db_session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=long_ago))
    db_session.commit()
    assert _submit(client, key).status_code == 202
    used = _last_used(db_session, row.id)
    assert used is not None and datetime.now(UTC) - used < timedelta(minutes=1)


def test_on_sqlite_the_limit_holds_and_the_job_row_is_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded default: SQLite, its write lock instead of a row lock, the SQL broker (all real)."""
    for name in [n for n in os.environ if n.startswith("KINEMA_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("KINEMA_HOME", str(tmp_path))
    clear_caches()
    try:
        settings = get_settings()
        migrations.upgrade(settings.effective_database_url)
        engine = make_engine(settings.effective_database_url)
        params = resolve(GenerateRequest(prompt="a cat", duration=1), settings)
        with Session(engine, expire_on_commit=False) as session:
            key = keys.create_key(session, "one at a time", max_concurrent_jobs=1).row
            submitted = service.submit(session, key, params)
            with pytest.raises(RateLimited) as refused:
                service.submit(session, key, params)
            session.rollback()
            assert refused.value.code == "concurrency_limit_exceeded"
            stored = session.get(Job, submitted.job.id)
            assert stored is not None
            # The 202 presents the copy the submit kept; the row holds the same job.
            assert service.to_out(stored, base_url="", position=0) == service.to_out(
                submitted.job, base_url="", position=0
            )
            assert session.scalar(select(ApiKey.active_jobs).where(ApiKey.id == key.id)) == 1
            assert _last_used(session, key.id) is not None
        engine.dispose()
    finally:
        clear_caches()
