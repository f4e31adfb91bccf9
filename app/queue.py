"""The Celery application as both sides see it: the gateway sends tasks by name, workers run them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import redis
from celery import Celery
from kombu.transport import redis as kombu_redis

from app.config import Settings, get_settings
from app.served_models import queue_for

GENERATE_TASK = "kinema.generate_video"
WEBHOOK_DELIVER_TASK = "kinema.webhooks.deliver"
WEBHOOK_SWEEP_TASK = "kinema.webhooks.sweep"
JOB_SWEEP_TASK = "kinema.jobs.sweep"


class QueueUnavailable(Exception):
    """The broker did not accept the task."""


def _transport_options(settings: Settings) -> dict[str, object]:
    if settings.effective_broker_url.startswith(("redis", "rediss")):
        # How long a task taken by a worker that vanished waits before another worker gets it.
        return {"visibility_timeout": settings.broker_visibility_timeout_s}
    # kombu's SQL transport hands every transport option to create_engine, so it gets none.
    return {}


class _RedisChannel(kombu_redis.Channel):
    """kombu's Redis channel, with one client for its commands instead of a new `redis.Redis` for each.

    kombu builds a client object per command (a publish included), which costs more CPU than the LPUSH
    itself; a client is thread-safe and takes a pooled connection per command, so one per pool serves.
    """

    _shared_client: redis.Redis | None = None

    @contextmanager
    def conn_or_acquire(self, client: redis.Redis | None = None) -> Iterator[redis.Redis]:
        if client is not None:
            yield client
            return
        shared = self._shared_client
        if shared is None or shared.connection_pool is not self.pool:  # a new pool after a reconnect
            shared = self._shared_client = self._create_client()
        yield shared


class _NamedRedis(type):
    """Writes the transport class as `redis`, so broker URLs in logs and the worker banner read as usual."""

    def __str__(cls) -> str:
        return "redis"


class _RedisTransport(kombu_redis.Transport, metaclass=_NamedRedis):
    """kombu's Redis transport on `_RedisChannel`: the same messages, keys and behaviour."""

    Channel = _RedisChannel


def make_celery(settings: Settings) -> Celery:
    """A Celery app configured for long GPU tasks that must never be lost or run twice."""
    if not settings.broker_url:
        settings.home.mkdir(parents=True, exist_ok=True)  # the embedded broker is a file there
    broker_url = settings.effective_broker_url
    app = Celery("kinema", broker=broker_url)
    if broker_url.startswith(("redis://", "rediss://")):
        app.conf.broker_transport = _RedisTransport  # the URL still gives host, port, db and TLS
    app.conf.update(
        task_default_queue=settings.queue_name,
        task_routes={"kinema.webhooks.*": {"queue": settings.webhook_queue_name}},
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # results live in Postgres and S3, not the broker
        task_acks_late=True,  # a task is acknowledged only when it finished
        task_reject_on_worker_lost=True,  # ...and handed back if its process dies
        worker_prefetch_multiplier=1,  # a GPU worker holds one job, leaving the rest to idle workers
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3,
        broker_transport_options=_transport_options(settings),
        # A broker that is down must fail the submit quickly, not hang it.
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        worker_send_task_events=False,
        broker_heartbeat=0,
    )
    return app


@lru_cache
def get_celery() -> Celery:
    """The process's Celery app (the gateway uses it only to send)."""
    return make_celery(get_settings())


def enqueue_generation(job_id: str, model: str | None = None) -> None:
    """Send the generation task for a committed job row to its model's queue; the task carries the id only.

    `model` None: the default model's queue (KINEMA_QUEUE_NAME).
    """
    settings = get_settings()
    queue = settings.queue_name if model is None else queue_for(model, settings)
    try:
        get_celery().send_task(GENERATE_TASK, args=[job_id], queue=queue)
    except Exception as exc:  # kombu raises transport-specific errors
        raise QueueUnavailable(str(exc)) from exc


def enqueue_webhook_delivery(delivery_id: str, *, countdown: float | None = None) -> None:
    """Send the delivery task for a committed outbox row (QueueUnavailable if the broker refuses)."""
    settings = get_settings()
    try:
        get_celery().send_task(
            WEBHOOK_DELIVER_TASK, args=[delivery_id], queue=settings.webhook_queue_name, countdown=countdown
        )
    except Exception as exc:  # kombu raises transport-specific errors
        raise QueueUnavailable(str(exc)) from exc
