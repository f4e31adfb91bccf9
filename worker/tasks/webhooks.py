"""Webhook tasks: deliver one outbox row, and sweep for rows whose task was lost. Both take ids only."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from app.config import get_settings
from app.db import session_scope
from app.queue import WEBHOOK_DELIVER_TASK, WEBHOOK_SWEEP_TASK
from app.webhooks import delivery
from worker.celery_app import celery_app


@celery_app.task(
    name=WEBHOOK_DELIVER_TASK,
    acks_late=True,
    # A database that is briefly unreachable delays the delivery rather than losing it.
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=10,
)
def deliver_webhook(delivery_id: str) -> str:
    """Make the delivery's next attempt if it is due and no other task holds it; retries send themselves."""
    with session_scope() as session:
        status = delivery.deliver(session, delivery_id, get_settings())
    return status or "nothing to do"


@celery_app.task(name=WEBHOOK_SWEEP_TASK, acks_late=True, ignore_result=True)
def sweep_webhooks() -> int:
    """Send again the deliveries that are due and whose task never started (a crash, a lost message)."""
    with session_scope() as session:
        return len(delivery.sweep(session, get_settings()))
