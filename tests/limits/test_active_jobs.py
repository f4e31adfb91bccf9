"""`api_keys.active_jobs`, kept by triggers: right after every way a job is made, moved or removed,
on Postgres and on SQLite, so the concurrency check can read it instead of counting."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, text, update

import migrations
from app.api_keys.models import ApiKey
from app.db import make_engine
from app.jobs.models import Job


def _active(db_session: Any, key_id: str) -> int:
    db_session.expire_all()
    return int(db_session.scalar(select(ApiKey.active_jobs).where(ApiKey.id == key_id)))


def _count(db_session: Any, key_id: str) -> int:
    query = text("SELECT count(*) FROM jobs WHERE api_key_id = :k AND status IN ('queued', 'in_progress')")
    return int(db_session.scalar(query, {"k": key_id}))


def test_the_count_follows_submits_claims_finishes_and_deletes(
    client: Any, make_key: Any, make_job: Any, db_session: Any
) -> None:
    row, key = make_key()
    headers = {"Authorization": f"Bearer {key}"}
    for _ in range(3):
        assert (
            client.post("/generate", headers=headers, json={"prompt": "a cat", "duration": 1}).status_code
            == 202
        )
    assert _active(db_session, row.id) == 3
    first, second, third = db_session.scalars(select(Job).where(Job.api_key_id == row.id).order_by(Job.id))
    steps: list[tuple[Any, int]] = [
        (update(Job).where(Job.id == first.id).values(status="in_progress"), 3),  # still active
        (update(Job).where(Job.id == first.id).values(progress=50), 3),  # not a status write
        (update(Job).where(Job.id == first.id).values(status="succeeded"), 2),
        (update(Job).where(Job.id == second.id).values(status="canceled"), 1),
        (update(Job).where(Job.id == second.id).values(status="queued"), 2),  # a retry re-queues
        (delete(Job).where(Job.id == third.id), 1),
        (delete(Job).where(Job.id == first.id), 1),  # a finished job's row: no change
    ]
    for statement, expected in steps:
        db_session.execute(statement)
        db_session.commit()
        assert _active(db_session, row.id) == expected == _count(db_session, row.id), statement
    other, _ = make_key()
    make_job(other, status="queued")
    assert _active(db_session, other.id) == 1 and _active(db_session, row.id) == 1


def test_the_limit_reads_the_count(client: Any, make_key: Any, make_job: Any, db_session: Any) -> None:
    row, key = make_key(max_concurrent_jobs=2)
    make_job(row, status="in_progress")
    headers = {"Authorization": f"Bearer {key}"}
    body = {"prompt": "a cat", "duration": 1}
    assert client.post("/generate", headers=headers, json=body).status_code == 202
    assert client.post("/generate", headers=headers, json=body).status_code == 429
    assert _active(db_session, row.id) == 2


@pytest.mark.parametrize("transition", ["succeeded", "failed"])
def test_sqlite_triggers_keep_the_same_count(tmp_path: Path, transition: str) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    migrations.upgrade(url)
    engine = make_engine(url)
    columns = (
        "id, api_key_id, kind, status, phase, progress, step, total_steps, model, prompt, "
        "negative_prompt, duration_s, width, height, fps, num_frames, seed, num_inference_steps, "
        "guidance_scale, attempts, created_at, updated_at"
    )
    values = (
        ":id, 'k1', 'text', :s, 'queued', 0, 0, 0, 'm', 'p', '', 1, 64, 64, 8, 9, 1, 1, 5, 0, "
        "'2026-01-01', '2026-01-01'"
    )
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO api_keys (id, name, prefix, key_hash, created_at) VALUES "
                "('k1', 'k', 'p1', 'h', '2026-01-01'), ('k2', 'k', 'p2', 'h', '2026-01-01')"
            )
        )
        for status in ("queued", "queued", "in_progress", "succeeded"):
            conn.execute(
                text(f"INSERT INTO jobs ({columns}) VALUES ({values})"), {"id": uuid.uuid4().hex, "s": status}
            )

    def active(key_id: str) -> int:
        with engine.connect() as conn:
            return int(conn.scalar(text("SELECT active_jobs FROM api_keys WHERE id = :k"), {"k": key_id}))

    assert active("k1") == 3
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE jobs SET status = '{transition}' WHERE status = 'in_progress'"))
        conn.execute(
            text(
                "UPDATE jobs SET api_key_id = 'k2' "
                "WHERE id = (SELECT min(id) FROM jobs WHERE status = 'queued')"
            )
        )
    assert (active("k1"), active("k2")) == (1, 1)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM jobs"))
    assert (active("k1"), active("k2")) == (0, 0)
    engine.dispose()


def test_downgrade_keeps_the_jobs_on_sqlite(tmp_path: Path) -> None:
    from alembic import command

    url = f"sqlite:///{tmp_path / 'd.db'}"
    migrations.upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO api_keys (id, name, prefix, key_hash, created_at) "
                "VALUES ('k', 'k', 'p', 'h', 'x')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO jobs (id, api_key_id, kind, status, phase, progress, step, total_steps, model, "
                "prompt, negative_prompt, duration_s, width, height, fps, num_frames, seed, "
                "num_inference_steps, guidance_scale, attempts, created_at, updated_at) VALUES ('j', 'k', "
                "'text', 'queued', 'queued', 0, 0, 0, 'm', 'p', '', 1, 64, 64, 8, 9, 1, 1, 5, 0, 'x', 'x')"
            )
        )
    command.downgrade(migrations.alembic_config(url), "0007_watermark_hash")
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM jobs")) == 1
    migrations.upgrade(url)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT active_jobs FROM api_keys")) == 1  # the upgrade counts again
    engine.dispose()
