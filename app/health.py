"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.db import get_engine
from app.queue import get_celery
from app.storage import StorageError, get_storage

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _check_database() -> str | None:
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means not ready
        return str(exc).splitlines()[0]
    return None


def _check_broker() -> str | None:
    try:
        with get_celery().connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:  # kombu raises transport-specific errors
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def _check_storage() -> str | None:
    try:
        get_storage().check()
    except StorageError as exc:
        return str(exc)
    return None


@router.get("/readyz", summary="Database, broker and storage are reachable")
def readyz() -> JSONResponse:
    checks = {"database": _check_database(), "broker": _check_broker(), "storage": _check_storage()}
    ready = all(problem is None for problem in checks.values())
    body = {
        "status": "ok" if ready else "unavailable",
        "checks": {name: ("ok" if problem is None else problem) for name, problem in checks.items()},
    }
    return JSONResponse(body, status_code=200 if ready else 503)
