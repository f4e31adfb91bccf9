"""A run's cancel check: the `should_stop` that `model.generate` calls after every denoising step."""

from __future__ import annotations

import logging
import math
import time

from sqlalchemy.exc import SQLAlchemyError

from app.db import session_scope
from app.jobs import runs
from app.jobs.live import ProgressChannel

log = logging.getLogger(__name__)


class CancelWatch:
    """True once a cancel was asked for the job: the Redis flag is read at every call (one GET), the
    job's row at most every `interval_s` (deployments without Redis, or a flag Redis failed to keep)."""

    def __init__(self, job_id: str, channel: ProgressChannel | None, *, interval_s: float) -> None:
        self.job_id = job_id
        self.channel = channel
        self.interval_s = interval_s
        self.requested = False
        self._row_read_at = -math.inf

    def __call__(self) -> bool:
        if self.requested:
            return True
        if self.channel is not None and self.channel.cancel_requested(self.job_id):
            self.requested = True
        elif time.monotonic() - self._row_read_at >= self.interval_s:
            self._row_read_at = time.monotonic()
            try:
                with session_scope() as session:
                    self.requested = runs.cancel_requested(session, self.job_id)
            except SQLAlchemyError as exc:  # a dropped connection: read again next interval
                log.warning("cancel check for %s failed: %s", self.job_id, exc)
        if self.requested:
            log.info("job %s: cancel requested, stopping", self.job_id)
        return self.requested
