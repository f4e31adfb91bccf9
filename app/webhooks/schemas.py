"""Request and response bodies of the webhooks API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

EventType = Literal["video.completed", "video.failed", "video.canceled", "video.in_progress"]
# What an endpoint receives when it names no events; `video.in_progress` is opt-in.
DEFAULT_EVENTS: list[EventType] = ["video.completed", "video.failed", "video.canceled"]
# The events a per-request `webhook_url` receives.
TERMINAL_EVENTS: frozenset[str] = frozenset(DEFAULT_EVENTS)


class EndpointCreate(BaseModel):
    """POST /v1/webhooks."""

    model_config = ConfigDict(extra="forbid", strict=True)

    url: str = Field(description="Where events are POSTed (http or https, a public address).")
    events: list[EventType] = Field(
        default_factory=lambda: list(DEFAULT_EVENTS),
        min_length=1,
        description="Which events to send. Default: the terminal ones; `video.in_progress` is opt-in.",
    )


class EndpointUpdate(BaseModel):
    """PATCH /v1/webhooks/{id}: only the fields given change."""

    model_config = ConfigDict(extra="forbid", strict=True)

    url: str | None = None
    events: list[EventType] | None = Field(default=None, min_length=1)
    enabled: bool | None = Field(default=None, description="Re-enable an endpoint that was disabled.")


class RotateSecret(BaseModel):
    """POST /v1/webhooks/{id}/rotate_secret."""

    model_config = ConfigDict(extra="forbid", strict=True)

    keep_old_secret_active_for_24_hours: bool = Field(
        default=False, description="Sign with both secrets for 24 h so receivers can switch over."
    )


class EndpointOut(BaseModel):
    id: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    url: str
    events: list[str]
    enabled: bool
    disabled_reason: str | None
    secret_hint: str = Field(description="The first and last characters of the signing secret.")
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(EndpointOut):
    secret: str = Field(description="The `whsec_...` signing secret. Shown only here: store it.")


class EndpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EndpointOut]


class DeletedEndpoint(BaseModel):
    id: str
    object: Literal["webhook_endpoint.deleted"] = "webhook_endpoint.deleted"
    deleted: bool = True


class SigningSecretOut(BaseModel):
    """The secret that signs deliveries to per-request `webhook_url`s."""

    object: Literal["webhook_signing_secret"] = "webhook_signing_secret"
    secret: str


class AttemptOut(BaseModel):
    number: int
    url: str
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    response_body: str | None = Field(description="The start of the receiver's answer (truncated).")
    error: str | None


class DeliveryOut(BaseModel):
    id: str
    object: Literal["webhook_delivery"] = "webhook_delivery"
    event_id: str = Field(description="The `webhook-id` header: the same on every attempt.")
    event_type: str
    endpoint_id: str | None
    url: str | None = Field(description="The per-request `webhook_url`, for deliveries without an endpoint.")
    job_id: str | None
    status: Literal["pending", "succeeded", "failed"]
    attempt_count: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    attempts: list[AttemptOut]


class DeliveryList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DeliveryOut]
    has_more: bool
    next_cursor: str | None = Field(description="Pass as `after` to get the next page.")
