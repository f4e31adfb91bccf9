"""GET /jobs/{id}/events: a job's status and progress as Server-Sent Events.

The first event is the job as it is now (so a reconnect simply starts over from the current state);
then one event per change of status or progress; the last is the finished job, and the stream ends.
With Redis, changes arrive by pub/sub on `kinema:job:{id}` (a snapshot per denoising step, and an
announcement per status change); the row is still read when nothing arrived for a while, so a lost
message costs a moment, not the end of the stream. Without Redis the row is polled.

Every event's data is the job object of GET /jobs/{id}; its name is `status` (the first event and every
status change, the final one included) or `progress`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import redis
import redis.asyncio as aioredis
from sqlalchemy.orm import Session
from sse_starlette import ServerSentEvent
from starlette.concurrency import run_in_threadpool

from app.api_keys.models import ApiKey
from app.config import Settings
from app.jobs import service
from app.jobs.eta import seconds_until
from app.jobs.live import ProgressSnapshot, channel
from app.jobs.schemas import JobOut
from app.jobs.states import TERMINAL, JobStatus

log = logging.getLogger(__name__)

# Seconds between keep-alive comments, so proxies do not close a quiet stream.
PING_S = 15
# How soon a browser's EventSource reconnects after a dropped connection.
RETRY_MS = 1000


def _read(session: Session, key: ApiKey, job_id: str, base_url: str) -> JobOut:
    """The job from its row, now; the read's transaction ends so the next read sees new commits."""
    try:
        session.expire_all()
        return service.present(session, service.get_job(session, key, job_id), base_url=base_url)
    finally:
        session.rollback()


def _with_snapshot(view: JobOut, snapshot: ProgressSnapshot) -> JobOut:
    """`view` with a running job's live progress: no database read per denoising step."""
    eta = seconds_until(snapshot.expected_finish_at)
    return view.model_copy(
        update={
            "phase": snapshot.phase,
            "progress": snapshot.progress,
            "step": snapshot.step,
            "total_steps": snapshot.total_steps,
            "eta_seconds": eta,
        }
    )


def _state(view: JobOut) -> tuple[Any, ...]:
    """What a listener cares about: an event is sent when this changes (the ETA alone does not count)."""
    return (view.status, view.phase, view.progress, view.step, view.total_steps, view.queue_position)


def _event(name: str, view: JobOut, *, retry: int | None = None) -> ServerSentEvent:
    return ServerSentEvent(data=view.model_dump_json(), event=name, retry=retry)


async def _subscribe(url: str, job_id: str) -> tuple[aioredis.Redis, Any] | None:
    """A pub/sub subscription to the job's channel, or None (polling then) when Redis does not answer."""
    client = aioredis.Redis.from_url(url, socket_connect_timeout=1, health_check_interval=30)
    try:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(channel(job_id))
    except (redis.RedisError, OSError) as exc:
        log.warning("events for %s: Redis pub/sub unavailable, polling the row: %s", job_id, exc)
        await client.aclose()
        return None
    return client, pubsub


async def _next_snapshot(pubsub: Any, timeout: float) -> ProgressSnapshot | None:
    """The next published snapshot, or None after `timeout` seconds of quiet."""
    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
    if message is None or message.get("type") != "message":
        return None
    return ProgressSnapshot(**json.loads(message["data"]))


async def job_events(
    session: Session, key: ApiKey, job_id: str, *, base_url: str, settings: Settings
) -> AsyncIterator[ServerSentEvent]:
    """The stream's events, from the current state to the finished job."""
    interval = settings.events_poll_interval_s
    # Subscribe before the first read, so no change between the two is missed.
    subscription = await _subscribe(settings.redis_url, job_id) if settings.redis_url else None
    try:
        view = await run_in_threadpool(_read, session, key, job_id, base_url)
        yield _event("status", view, retry=RETRY_MS)
        last_read = time.monotonic()
        while view.status not in TERMINAL:
            snapshot = None
            if subscription is not None:
                try:
                    snapshot = await _next_snapshot(subscription[1], interval)
                except (redis.RedisError, OSError) as exc:
                    log.warning("events for %s: Redis pub/sub lost, polling the row: %s", job_id, exc)
                    await subscription[0].aclose()
                    subscription = None
            else:
                await anyio.sleep(interval)
            if snapshot is not None and snapshot.status == view.status == JobStatus.IN_PROGRESS:
                new = _with_snapshot(view, snapshot)
            elif snapshot is not None or time.monotonic() - last_read >= interval:
                new = await run_in_threadpool(_read, session, key, job_id, base_url)
                last_read = time.monotonic()
            else:
                continue
            if _state(new) != _state(view):
                yield _event("status" if new.status != view.status else "progress", new)
            view = new
    finally:
        if subscription is not None:
            await subscription[1].aclose()
            await subscription[0].aclose()
