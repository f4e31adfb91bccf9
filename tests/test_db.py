"""The engine's connection pool: a connection that died while idle is replaced, not handed out."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from app import db
from tests.conftest import POSTGRES_URL


def _backend_pid(engine: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(pid: int) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_connection_killed_while_idle_is_replaced_on_checkout(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_IDLE_S", 0.0)  # every checkout counts as after a pause
    engine = db.make_engine(pg_url, pool_size=1, max_overflow=0)
    try:
        first = _backend_pid(engine)
        _terminate(first)  # a Postgres restart, or a proxy dropping idle connections
        assert _backend_pid(engine) != first  # the ping noticed, and the pool reconnected
    finally:
        engine.dispose()


def test_a_busy_pool_skips_the_ping(pg_url: str) -> None:
    engine = db.make_engine(pg_url, pool_size=1, max_overflow=0)
    statements: list[str] = []
    from sqlalchemy import event

    try:
        _backend_pid(engine)

        @event.listens_for(engine, "checkout")
        def _count(*_: Any) -> None:
            statements.append("checkout")

        pid = _backend_pid(engine)
        assert _backend_pid(engine) == pid and statements == ["checkout", "checkout"]
        # Killed right after use: within PING_IDLE_S the pool trusts it, so the next statement fails
        # and the pool invalidates it; the statement after that runs on a fresh connection.
        _terminate(pid)
        from sqlalchemy.exc import OperationalError

        with pytest.raises(OperationalError):
            _backend_pid(engine)
        assert _backend_pid(engine) != pid
    finally:
        engine.dispose()
