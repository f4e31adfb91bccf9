"""What the broker holds: which jobs still have a generation task, so the sweeper re-sends only lost ones.

On Redis (kombu's transport) a task is either waiting in its queue's list(s) or, once delivered to a
worker and until acknowledged, in the `unacked` hash (ETA retries included). Both are read here. Other
transports cannot be listed; for them the sweeper can only tell whether the queue is empty.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from celery import Celery

from app.queue import GENERATE_TASK

log = logging.getLogger(__name__)

# Messages read per LRANGE: a long queue is read in pieces.
CHUNK = 1000


def _job_id(raw: Any) -> str | None:
    """The job id a generation task message carries, or None for another task or an unreadable one."""
    try:
        message = json.loads(raw) if isinstance(raw, str | bytes) else raw
        if message.get("headers", {}).get("task") != GENERATE_TASK:
            return None
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(args[0]) if args else None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None


def _list_items(client: Any, key: str) -> Iterator[bytes]:
    # Producers push on the left and consumers pop on the right, so reading by index never skips one.
    start = 0
    while True:
        chunk = client.lrange(key, start, start + CHUNK - 1)
        yield from chunk
        if len(chunk) < CHUNK:
            return
        start += CHUNK


def _from_redis(channel: Any, queue: str) -> set[str]:
    client = channel.client
    # Every priority level has its own list; kombu names them (`_q_for_pri` has no public twin).
    keys: Iterable[str] = dict.fromkeys(channel._q_for_pri(queue, pri) for pri in channel.priority_steps)
    held: set[str] = set()
    # The queue first, then the unacked hash: a task moving from one to the other is seen at least once.
    for key in keys:
        held.update(job for job in map(_job_id, _list_items(client, key)) if job)
    for value in client.hvals(channel.unacked_key):
        try:
            message = json.loads(value)[0]  # [message, exchange, routing key]
        except (ValueError, TypeError, IndexError):
            continue
        job = _job_id(message)
        if job:
            held.add(job)
    return held


def held_job_ids(celery: Celery, queue: str) -> set[str] | None:
    """Job ids whose generation task the broker holds (waiting in `queue`, or delivered and not yet
    acknowledged); None when the transport cannot be listed (not Redis)."""
    with celery.connection_for_read() as connection:
        if connection.transport.driver_type != "redis":
            return None
        return _from_redis(connection.default_channel, queue)


def queue_is_empty(celery: Celery, queue: str) -> bool:
    """Whether `queue` has no waiting message (any transport); False when that cannot be read."""
    try:
        with celery.connection_for_read() as connection:
            declared = connection.default_channel.queue_declare(queue=queue, passive=True)
            return int(declared.message_count) == 0
    except Exception as exc:  # kombu raises transport-specific errors
        log.warning("could not read the size of queue %s: %s", queue, exc)
        return False
