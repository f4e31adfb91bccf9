"""The moderation audit table: one row per blocked or flagged prompt field, never the prompt itself."""

from __future__ import annotations

import os
import time
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow

BLOCKED = "blocked"
FLAGGED = "flagged"


def new_event_id() -> str:
    """`modev_` + 48-bit milliseconds + 80 random bits, hex: unique and ordered by creation time."""
    return f"modev_{int(time.time() * 1000):012x}{os.urandom(10).hex()}"


class ModerationEvent(Base):
    """A prompt field the content filters blocked or flagged: who, when, why, and a hash of the text."""

    __tablename__ = "moderation_events"
    __table_args__ = (Index("ix_moderation_events_api_key_id_created_at", "api_key_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=new_event_id)
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(16))  # BLOCKED or FLAGGED
    param: Mapped[str] = mapped_column(String(40))  # prompt or negative_prompt
    categories: Mapped[list[str]] = mapped_column(JSON)
    # `rules` (the policy file) or `classifier` (the external endpoint).
    source: Mapped[str] = mapped_column(String(16))
    # SHA-256 of the field's text as sent (UTF-8): repeated attempts are recognisable, the text is not kept.
    prompt_sha256: Mapped[str] = mapped_column(String(64))
    # A flagged prompt's job; None when blocked (no job was made).
    job_id: Mapped[str | None] = mapped_column(String(40), default=None)
