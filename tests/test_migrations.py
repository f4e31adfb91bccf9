"""Alembic migrations build exactly the schema the models describe, on Postgres and on SQLite."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect

import app.api_keys.models
import app.jobs.models
import app.webhooks.models  # noqa: F401  (registers the tables)
import migrations
from app.db import Base, make_engine
from tests.conftest import POSTGRES_URL, sqlalchemy_url


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    name = f"kinema_mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield sqlalchemy_url(POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}")
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_upgrade_matches_models_and_downgrade_undoes_it(
    backend: str, empty_postgres: str, tmp_path: Path
) -> None:
    url = empty_postgres if backend == "postgres" else f"sqlite:///{tmp_path / 'm.db'}"
    migrations.upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert {"api_keys", "jobs", "alembic_version"} <= set(inspect(engine).get_table_names())
    command.downgrade(migrations.alembic_config(url), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrations.upgrade(url)
    assert "jobs" in inspect(engine).get_table_names()
    engine.dispose()


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_0006_job_inputs_keeps_existing_jobs_and_round_trips(
    backend: str, empty_postgres: str, tmp_path: Path
) -> None:
    """A job written before 0006 survives it with no input; the new columns hold values; downgrade drops
    them and keeps the rows."""
    from datetime import UTC, datetime

    from sqlalchemy import MetaData, Table, select, types

    url = empty_postgres if backend == "postgres" else f"sqlite:///{tmp_path / 'm.db'}"
    migrations.upgrade(url, "0005_moderation")
    engine = make_engine(url)

    def filled(table: Table, **values: object) -> dict[str, object]:
        # Every required column of the table as it is at this revision, whatever the later models say.
        for column in table.columns:
            if column.name in values or column.nullable:
                continue
            kind = column.type
            if isinstance(kind, types.DateTime):
                values[column.name] = datetime.now(UTC)
            elif isinstance(kind, types.Integer | types.Float | types.Numeric):
                values[column.name] = 1
            elif isinstance(kind, types.JSON):
                values[column.name] = []
            elif isinstance(kind, types.Boolean):
                values[column.name] = False
            else:
                values[column.name] = "x"
        return values

    with engine.begin() as conn:
        meta = MetaData()
        keys = Table("api_keys", meta, autoload_with=conn)
        jobs = Table("jobs", meta, autoload_with=conn)
        assert "input_key" not in jobs.columns
        conn.execute(keys.insert().values(filled(keys, id="key_1", prefix="p1")))
        conn.execute(jobs.insert().values(filled(jobs, id="video_old", api_key_id="key_1", kind="text")))
    engine.dispose()

    migrations.upgrade(url, "0006_job_inputs")
    engine = make_engine(url)
    with engine.begin() as conn:
        jobs = Table("jobs", MetaData(), autoload_with=conn)
        old = conn.execute(select(jobs).where(jobs.c.id == "video_old")).mappings().one()
        assert (old["kind"], old["input_key"], old["input_type"], old["strength"]) == (
            "text",
            None,
            None,
            None,
        )
        row = filled(jobs, id="video_new", api_key_id="key_1", kind="edit", parent_id="video_old")
        row.update(input_key="inputs/key_1/inp_1.mp4", input_type="video", strength=0.35)
        conn.execute(jobs.insert().values(row))
        new = conn.execute(select(jobs).where(jobs.c.id == "video_new")).mappings().one()
        assert (new["input_key"], new["input_type"], new["strength"]) == (
            "inputs/key_1/inp_1.mp4",
            "video",
            0.35,
        )
    command.downgrade(migrations.alembic_config(url), "0005_moderation")
    with engine.connect() as conn:
        jobs = Table("jobs", MetaData(), autoload_with=conn)
        assert not {"input_key", "input_type", "strength"} & set(jobs.columns.keys())
        assert conn.execute(select(func.count()).select_from(jobs)).scalar_one() == 2
    engine.dispose()
