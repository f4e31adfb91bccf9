"""Job events for webhooks, written to an outbox in the same transaction as the job's state change.

Callers that change a job's status call `record_job_event` before committing, so an event exists exactly
when the state change does. Once that transaction commits, a delivery task is sent for each new row; if
the process dies in between, or the broker loses the task, the sweeper sends it again.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.orm import Session, SessionTransaction

from app.config import get_settings
from app.db import utcnow
from app.jobs import service as jobs_service
from app.jobs.models import Job
from app.queue import QueueUnavailable, enqueue_webhook_delivery
from app.webhooks.models import WebhookDelivery, WebhookEndpoint, new_id
from app.webhooks.schemas import TERMINAL_EVENTS

log = logging.getLogger(__name__)

# Where a session keeps the ids of the outbox rows it wrote, until its transaction commits.
_UNSENT = "kinema.webhooks.unsent"
# Links in payloads when KINEMA_API_BASE_URL is not set: `kinema dev`'s address.
FALLBACK_BASE_URL = "http://127.0.0.1:8000"


def job_event_body(job: Job, event_type: str, event_id: str) -> str:
    """The JSON body of an event: an envelope around the job exactly as GET /jobs/{id} shows it."""
    base_url = jobs_service.public_base_url(get_settings(), FALLBACK_BASE_URL)
    envelope: dict[str, Any] = {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created_at": int(utcnow().timestamp()),
        "data": jobs_service.to_out(job, base_url=base_url, position=None).model_dump(mode="json"),
    }
    return json.dumps(envelope, separators=(",", ":"))


def record_job_event(session: Session, job_id: str, event: str) -> list[str]:
    """Queue `event` (e.g. `video.completed`) for the job's webhook endpoints; the caller commits.

    Returns the ids of the delivery rows written (none when nobody listens for the event).
    """
    # The caller just changed the row with an UPDATE: read it fresh, not from the identity map.
    job = session.scalar(select(Job).where(Job.id == job_id).execution_options(populate_existing=True))
    if job is None:
        return []
    endpoints = session.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.api_key_id == job.api_key_id, WebhookEndpoint.enabled.is_(True))
        .order_by(WebhookEndpoint.id)
    )
    targets: list[tuple[str | None, str | None]] = [
        (endpoint.id, None) for endpoint in endpoints if event in endpoint.events
    ]
    if job.webhook_url and event in TERMINAL_EVENTS:
        targets.append((None, job.webhook_url))
    if not targets:
        return []
    now = utcnow()
    event_id = new_id("evt")
    body = job_event_body(job, event, event_id)
    rows = [
        WebhookDelivery(
            id=new_id("msg"),
            event_id=event_id,
            event_type=event,
            api_key_id=job.api_key_id,
            job_id=job.id,
            endpoint_id=endpoint_id,
            url=url,
            payload=body,
            next_attempt_at=now,
            # The send after commit is due now; the sweeper steps in if it never starts.
            dispatched_at=now,
        )
        for endpoint_id, url in targets
    ]
    session.add_all(rows)
    ids = [row.id for row in rows]
    send_after_commit(session, ids)
    return ids


def send_after_commit(session: Session, delivery_ids: list[str]) -> None:
    """Send the delivery tasks for these rows once the session's transaction commits (never before)."""
    session.info.setdefault(_UNSENT, []).extend(delivery_ids)


def send_deliveries(delivery_ids: list[str]) -> None:
    """Send a delivery task per id; a broker that refuses is logged, and the sweeper sends them later."""
    for delivery_id in delivery_ids:
        try:
            enqueue_webhook_delivery(delivery_id)
        except QueueUnavailable as exc:
            log.warning("webhook delivery %s not sent (%s); the sweeper will send it", delivery_id, exc)


@sa_event.listens_for(Session, "after_commit")
def _send_after_commit(session: Session) -> None:
    # Only now do the rows exist for the worker that picks up the task.
    unsent = session.info.pop(_UNSENT, None)
    if unsent:
        send_deliveries(unsent)


@sa_event.listens_for(Session, "after_soft_rollback")
def _forget_after_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    # The whole transaction is gone (not just a savepoint inside it): so are its rows.
    if previous_transaction.parent is None:
        session.info.pop(_UNSENT, None)
