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
from sqlalchemy import inspect

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
