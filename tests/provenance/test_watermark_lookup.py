"""The job a watermark names is found by an indexed hash column, filled on insert and back-filled by
migration 0007, on Postgres and on SQLite."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from sqlalchemy import inspect, select, text, update
from sqlalchemy.orm import Session

import migrations
from app.api_keys.service import create_key
from app.config import get_settings
from app.db import make_engine
from app.jobs.models import Job
from app.provenance.service import find_job
from model.invisible_watermark import Payload, short_hash
from tests.conftest import POSTGRES_URL, sqlalchemy_url

BEFORE, THIS = "0006_job_inputs", "0007_watermark_hash"


@pytest.fixture(params=["postgres", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'kinema.db'}"
        return
    name = f"kinema_wm_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield sqlalchemy_url(POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}")
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def insert_old_rows(connection: Any, job_ids: list[str]) -> None:
    """Rows as the schema before 0007 holds them: no hash column."""
    now = datetime.now(UTC)
    connection.execute(
        text(
            "INSERT INTO api_keys (id, name, prefix, key_hash, created_at)"
            " VALUES ('key_old', 'old', 'kn_o', 'x', :now)"
        ),
        {"now": now},
    )
    connection.execute(
        text(
            "INSERT INTO jobs (id, api_key_id, kind, status, phase, progress, step, total_steps, model,"
            " prompt, negative_prompt, duration_s, width, height, fps, num_frames, seed,"
            " num_inference_steps, guidance_scale, attempts, created_at, updated_at)"
            " VALUES (:id, 'key_old', 'text', 'succeeded', 'done', 100, 4, 4, 'builtin:tiny-wan',"
            " 'a red ball', '', 2, 256, 256, 8, 16, 1, 4, 5, 1, :now, :now)"
        ),
        [{"id": job_id, "now": now} for job_id in job_ids],
    )


def test_migration_back_fills_the_hash_indexes_it_and_downgrades(database_url: str) -> None:
    job_ids = [f"video_{index:032x}" for index in range(2500)]  # more than one back-fill batch
    migrations.upgrade(database_url, BEFORE)
    engine = make_engine(database_url)
    with engine.begin() as connection:
        insert_old_rows(connection, job_ids)

    migrations.upgrade(database_url, THIS)
    with engine.connect() as connection:
        stored = dict(connection.execute(text("SELECT id, watermark_job_hash FROM jobs")).all())
    assert stored == {job_id: short_hash(job_id, 32) for job_id in job_ids}
    indexes = {index["name"]: index["column_names"] for index in inspect(engine).get_indexes("jobs")}
    assert indexes["ix_jobs_watermark_job_hash"] == ["watermark_job_hash"]
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SET enable_seqscan = off"))  # few rows: make the planner show its index
            plan = " ".join(
                connection.execute(
                    text("EXPLAIN SELECT id FROM jobs WHERE watermark_job_hash = :h"),
                    {"h": stored[job_ids[7]]},
                ).scalars()
            )
        assert "ix_jobs_watermark_job_hash" in plan, plan

    command.downgrade(migrations.alembic_config(database_url), BEFORE)
    assert "watermark_job_hash" not in {column["name"] for column in inspect(engine).get_columns("jobs")}

    # At head, a job made through the ORM gets its hash on insert, and the lookup finds it.
    migrations.upgrade(database_url)
    with Session(engine) as session:
        key = create_key(session, "new").row
        job = Job(
            id="video_0123456789abcdef0123456789abcdef",
            api_key_id=key.id,
            model="builtin:tiny-wan",
            prompt="a red ball",
            duration_s=2.0,
            width=256,
            height=256,
            fps=8,
            num_frames=16,
            seed=1,
            num_inference_steps=4,
            guidance_scale=5.0,
        )
        session.add(job)
        session.commit()
        assert job.watermark_job_hash == short_hash(job.id, 32)
        payload = Payload.for_job(get_settings().watermark_issuer, key.id, job.id)
        assert find_job(session, payload) == job
    engine.dispose()


def test_new_jobs_carry_the_hash_and_the_key_hash_settles_a_collision(
    db_session: Any, make_key: Any, make_job: Any
) -> None:
    owner, _ = make_key("owner")
    other, _ = make_key("other")
    job = make_job(owner)
    assert job.watermark_job_hash == short_hash(job.id, 32)
    stored = db_session.scalar(select(Job.watermark_job_hash).where(Job.id == job.id))
    assert stored == short_hash(job.id, 32)

    # Another key's job that happens to share the 32-bit job hash is not the one the watermark names.
    impostor = make_job(other)
    db_session.execute(
        update(Job).where(Job.id == impostor.id).values(watermark_job_hash=job.watermark_job_hash)
    )
    db_session.commit()
    issuer = get_settings().watermark_issuer
    assert find_job(db_session, Payload.for_job(issuer, owner.id, job.id)) == job
    assert find_job(db_session, Payload.for_job(issuer, other.id, job.id)) == impostor
    assert find_job(db_session, Payload.for_job(issuer, owner.id, "video_never_made")) is None
