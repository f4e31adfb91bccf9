"""Retries with exponential backoff: a worker's state writes across a dropped database connection, and
its uploads across a storage outage. The caller says which errors are worth another try and the budget."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import session_scope

log = logging.getLogger(__name__)

T = TypeVar("T")

# Database retries: the first wait and the longest one (the deadline is KINEMA_DB_RETRY_DEADLINE_S).
DB_FIRST_WAIT_S = 0.1
DB_MAX_WAIT_S = 5.0


@dataclass(frozen=True, slots=True)
class Backoff:
    """At most `attempts` calls (None: no count) within `deadline_s`, waiting `first_wait_s` after the
    first failure and twice as long after each next one, but never more than `max_wait_s`."""

    attempts: int | None
    deadline_s: float
    first_wait_s: float
    max_wait_s: float

    def wait_s(self, failures: int) -> float:
        """How long to wait after the `failures`-th failure (1-based)."""
        return float(min(self.max_wait_s, self.first_wait_s * 2 ** (failures - 1)))


def call_with_retry(
    call: Callable[[], T],
    *,
    retry_if: Callable[[Exception], bool],
    backoff: Backoff,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """`call()`, again after each error that `retry_if` accepts, until it returns or the budget is spent
    (then the last error propagates). Every retry is logged with its attempt number."""
    started = clock()
    failures = 0
    while True:
        try:
            return call()
        except Exception as exc:
            if not retry_if(exc):
                raise
            failures += 1
            wait = backoff.wait_s(failures)
            spent = clock() - started
            if (backoff.attempts is not None and failures >= backoff.attempts) or (
                spent + wait > backoff.deadline_s
            ):
                log.warning(
                    "%s failed, giving up after %d attempts in %.1f s: %s", what, failures, spent, exc
                )
                raise
            log.warning("%s failed (attempt %d), retrying in %.2f s: %s", what, failures, wait, exc)
            sleep(wait)


def is_disconnect(exc: Exception) -> bool:
    """A dropped, refused or terminated database connection: worth a retry on a fresh connection."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError)


def with_db_retry(work: Callable[[Session], T], *, what: str) -> T:
    """`work(session)` in a fresh session, run again while the database connection drops (Postgres
    restarted, backends terminated) for up to KINEMA_DB_RETRY_DEADLINE_S.

    `work` must be safe to run twice: the run writes are compare-and-sets on the run's token.
    """

    def once() -> T:
        with session_scope() as session:
            return work(session)

    backoff = Backoff(
        attempts=None,
        deadline_s=get_settings().db_retry_deadline_s,
        first_wait_s=DB_FIRST_WAIT_S,
        max_wait_s=DB_MAX_WAIT_S,
    )
    return call_with_retry(once, retry_if=is_disconnect, backoff=backoff, what=what)
