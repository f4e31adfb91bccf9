"""Webhook tables: endpoints per API key, the outbox of deliveries, and the log of each attempt."""

from __future__ import annotations

import os
import time
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, utcnow

# What a delivery row can be: waiting for (another) attempt, done, or given up.
PENDING = "pending"
SUCCEEDED = "succeeded"
FAILED = "failed"


def new_id(prefix: str) -> str:
    """`prefix_` + 48-bit milliseconds + 80 random bits, hex: unique and ordered by creation time."""
    return f"{prefix}_{int(time.time() * 1000):012x}{os.urandom(10).hex()}"


class WebhookEndpoint(Base):
    """A URL an API key registered to receive its jobs' events."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_api_key_id_id", "api_key_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSON)
    # `whsec_` + base64: kept (not hashed) because every delivery is signed with it.
    secret: Mapped[str] = mapped_column(String(100))
    # After a rotation that keeps the old secret working for a while, deliveries carry both signatures.
    previous_secret: Mapped[str | None] = mapped_column(String(100), default=None)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookSigningSecret(Base):
    """The secret that signs deliveries to per-request `webhook_url`s, one per API key."""

    __tablename__ = "webhook_signing_secrets"

    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), primary_key=True)
    secret: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event for one target: the outbox row, written in the same transaction as the job's change."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
        Index("ix_webhook_deliveries_api_key_id_id", "api_key_id", "id"),
        # The sweeper's query: pending rows by due time.
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # The `webhook-id` header: the same on every attempt, so receivers can drop duplicates.
    event_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(64))
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    job_id: Mapped[str | None] = mapped_column(String(40), default=None)
    # A registered endpoint, or none for a per-request `webhook_url` (then `url` is set).
    endpoint_id: Mapped[str | None] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), default=None
    )
    url: Mapped[str | None] = mapped_column(Text, default=None)
    # The exact body that is signed and sent.
    payload: Mapped[str] = mapped_column(Text)

    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempt_count: Mapped[int] = mapped_column(default=0)
    # Attempts since the delivery was (re)started: the index into the retry schedule.
    cycle_attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set while a task holds the delivery (in flight); an expired lease can be taken again.
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    # When the last task sent for the next attempt was due to run; the sweeper re-sends stale ones.
    dispatched_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    attempts: Mapped[list[WebhookAttempt]] = relationship(
        back_populates="delivery", order_by="WebhookAttempt.id", passive_deletes=True, lazy="selectin"
    )


class WebhookAttempt(Base):
    """One HTTP attempt of a delivery, as the delivery log shows it."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery_id_id", "delivery_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    number: Mapped[int]
    url: Mapped[str] = mapped_column(Text)
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None] = mapped_column(default=None)
    latency_ms: Mapped[int] = mapped_column(default=0)
    # The first bytes of the receiver's answer, for debugging from the log.
    response_body: Mapped[str | None] = mapped_column(Text, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)

    delivery: Mapped[WebhookDelivery] = relationship(back_populates="attempts")
