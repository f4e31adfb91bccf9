"""Gauges read at scrape time, not kept by any process: jobs by status and the broker's queue depths.

A scrape costs one `GROUP BY status` on the jobs table and one `LLEN` per queue; requests cost nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import lru_cache

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from app.config import Settings, get_settings
from app.db import session_scope
from app.jobs.models import Job
from app.jobs.states import JobStatus
from app.served_models import generation_queues

log = logging.getLogger(__name__)

# kombu's Redis transport keeps a queue's messages of priority p > 0 under `<queue>\x06\x16<p>`.
_PRIORITY_SEPARATOR = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)


def job_counts() -> dict[str, int]:
    """Jobs by status, every status present (0 where none)."""
    counts = {str(status): 0 for status in JobStatus}
    with session_scope() as session:
        for status, count in session.execute(select(Job.status, func.count()).group_by(Job.status)):
            counts[str(status)] = int(count)
    return counts


@lru_cache
def _broker_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def queue_depths(settings: Settings) -> dict[str, int] | None:
    """Messages waiting in the generation and webhook queues; None unless the broker is Redis."""
    url = settings.effective_broker_url
    if not url.startswith(("redis://", "rediss://")):
        return None
    client = _broker_client(url)
    depths = {}
    for queue in (*generation_queues(settings), settings.webhook_queue_name):  # one queue per model
        keys = [queue, *(f"{queue}{_PRIORITY_SEPARATOR}{step}" for step in _PRIORITY_STEPS)]
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.llen(key)
            depths[queue] = sum(int(n) for n in pipe.execute())
    return depths


class StateCollector(Collector):
    """`kinema_jobs{status}` from the database and `kinema_queue_depth{queue}` from the broker."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        settings = get_settings()
        up = GaugeMetricFamily(
            "kinema_scrape_source_up",
            "Whether a scrape-time source answered (1) or not (0).",
            labels=["source"],
        )
        try:
            counts = job_counts()
        except Exception as exc:  # a scrape reports the database down rather than failing whole
            log.warning("metrics: counting jobs failed: %s", exc)
            up.add_metric(["database"], 0)
        else:
            up.add_metric(["database"], 1)
            jobs = GaugeMetricFamily("kinema_jobs", "Jobs in the database, by status.", labels=["status"])
            for status, count in counts.items():
                jobs.add_metric([status], count)
            yield jobs
        try:
            depths = queue_depths(settings)
        except redis.RedisError as exc:
            log.warning("metrics: reading queue depths failed: %s", exc)
            up.add_metric(["broker"], 0)
        else:
            if depths is not None:
                up.add_metric(["broker"], 1)
                depth = GaugeMetricFamily(
                    "kinema_queue_depth", "Tasks waiting in the broker, by queue.", labels=["queue"]
                )
                for queue, count in depths.items():
                    depth.add_metric([queue], count)
                yield depth
        yield up
