"""Request-scoped dependencies shared by every router.

Both are `async`: FastAPI runs a plain function dependency in its threadpool, and on a hot endpoint
each such hop costs more CPU than the work it wraps. The session is created without I/O; closing it
may roll back a read transaction (a round trip), so that part goes to the threadpool when needed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.config import Settings, get_settings
from app.db import get_sessionmaker


async def get_session() -> AsyncIterator[Session]:
    """One session per request, closed when the response is done."""
    session = get_sessionmaker()()
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)  # rolls back: a round trip to the database
        else:
            session.close()


async def current_settings() -> Settings:
    """The process's settings (cached after the first call)."""
    return get_settings()


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(current_settings)]
