"""Live progress through Redis: workers publish a snapshot per step, the API reads the freshest one."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import redis

from app.config import get_settings

log = logging.getLogger(__name__)

SNAPSHOT_TTL_S = 24 * 3600


@dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    """What a poller sees of a running job."""

    status: str
    phase: str
    progress: int
    step: int
    total_steps: int
    # Unix time the worker expects to finish at, from its own step times; None: no estimate yet.
    expected_finish_at: float | None = None


def _key(job_id: str) -> str:
    return f"kinema:job:{job_id}:progress"


def cancel_flag(job_id: str) -> str:
    """The key whose presence tells the job's worker to stop at its next step."""
    return f"kinema:job:{job_id}:cancel"


def channel(job_id: str) -> str:
    """The pub/sub channel a job's snapshots are published on."""
    return f"kinema:job:{job_id}"


class ProgressChannel:
    """Redis-backed; every method swallows Redis errors: live progress is best effort, Postgres is truth."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def publish(self, job_id: str, snapshot: ProgressSnapshot) -> None:
        data = json.dumps(asdict(snapshot))
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.set(_key(job_id), data, ex=SNAPSHOT_TTL_S)
            pipe.publish(channel(job_id), data)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("progress publish for %s failed: %s", job_id, exc)

    def announce(self, job_id: str, status: str) -> None:
        """Tell subscribers the job's status changed (they re-read the row); the progress key is kept."""
        data = json.dumps(asdict(ProgressSnapshot(status, "done", 0, 0, 0)))
        try:
            self.client.publish(channel(job_id), data)
        except redis.RedisError as exc:
            log.warning("status announce for %s failed: %s", job_id, exc)

    def request_cancel(self, job_id: str) -> None:
        """Raise the job's cancel flag (the row's `cancel_requested_at` backs it up when Redis fails)."""
        try:
            self.client.set(cancel_flag(job_id), "1", ex=SNAPSHOT_TTL_S)
        except redis.RedisError as exc:
            log.warning("cancel flag for %s failed: %s", job_id, exc)

    def cancel_requested(self, job_id: str) -> bool:
        """Whether the job's cancel flag is up; one GET, cheap enough for every denoising step."""
        try:
            return bool(self.client.exists(cancel_flag(job_id)))
        except redis.RedisError as exc:
            log.warning("cancel flag read for %s failed: %s", job_id, exc)
            return False

    def read(self, job_id: str) -> ProgressSnapshot | None:
        try:
            raw = self.client.get(_key(job_id))
        except redis.RedisError as exc:
            log.warning("progress read for %s failed: %s", job_id, exc)
            return None
        if raw is None:
            return None
        data: dict[str, Any] = json.loads(raw)
        return ProgressSnapshot(**data)


@lru_cache
def get_progress_channel() -> ProgressChannel | None:
    """The channel when KINEMA_REDIS_URL is set, else None (the embedded default polls the row)."""
    url = get_settings().redis_url
    if not url:
        return None
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1, health_check_interval=30)
    return ProgressChannel(client)
