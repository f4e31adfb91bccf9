"""HTTP endpoints for webhooks: manage endpoints, read the delivery log, redeliver, signing secrets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import SessionDep, SettingsDep
from app.security import GenerateKey, ReadKey
from app.webhooks import service
from app.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.webhooks.schemas import (
    AttemptOut,
    DeletedEndpoint,
    DeliveryList,
    DeliveryOut,
    EndpointCreate,
    EndpointList,
    EndpointOut,
    EndpointUpdate,
    EndpointWithSecret,
    RotateSecret,
    SigningSecretOut,
)
from app.webhooks.signing import secret_hint

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


def _endpoint_out(endpoint: WebhookEndpoint) -> EndpointOut:
    return EndpointOut(
        id=endpoint.id,
        url=endpoint.url,
        events=list(endpoint.events),
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        secret_hint=secret_hint(endpoint.secret),
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
    )


def _with_secret(endpoint: WebhookEndpoint) -> EndpointWithSecret:
    return EndpointWithSecret(**_endpoint_out(endpoint).model_dump(), secret=endpoint.secret)


def _attempt_out(attempt: WebhookAttempt) -> AttemptOut:
    return AttemptOut(
        number=attempt.number,
        url=attempt.url,
        attempted_at=attempt.attempted_at,
        status_code=attempt.status_code,
        latency_ms=attempt.latency_ms,
        response_body=attempt.response_body,
        error=attempt.error,
    )


def _delivery_out(delivery: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        endpoint_id=delivery.endpoint_id,
        url=delivery.url,
        job_id=delivery.job_id,
        status=delivery.status,  # type: ignore[arg-type]
        attempt_count=delivery.attempt_count,
        next_attempt_at=delivery.next_attempt_at if delivery.status == "pending" else None,
        last_error=delivery.last_error,
        created_at=delivery.created_at,
        delivered_at=delivery.delivered_at,
        attempts=[_attempt_out(attempt) for attempt in delivery.attempts],
    )


@router.post("", status_code=201, response_model=EndpointWithSecret, summary="Register a webhook endpoint")
def create_endpoint(
    body: EndpointCreate, key: GenerateKey, session: SessionDep, settings: SettingsDep
) -> EndpointWithSecret:
    """The answer carries the `whsec_...` signing secret: it is shown only here and on rotation."""
    return _with_secret(service.create_endpoint(session, key, body, settings))


@router.get("", response_model=EndpointList, summary="List your webhook endpoints")
def list_endpoints(key: ReadKey, session: SessionDep) -> EndpointList:
    return EndpointList(data=[_endpoint_out(e) for e in service.list_endpoints(session, key)])


# Declared before `/{endpoint_id}` so `default` is never taken for an endpoint id.
@router.get("/default/secret", response_model=SigningSecretOut, summary="The per-request webhook secret")
def get_signing_secret(key: GenerateKey, session: SessionDep) -> SigningSecretOut:
    """The secret that signs deliveries to a `webhook_url` given on POST /generate."""
    secret = service.signing_secret(session, key.id)
    session.commit()
    return SigningSecretOut(secret=secret)


@router.post(
    "/default/rotate_secret", response_model=SigningSecretOut, summary="Rotate the per-request webhook secret"
)
def rotate_signing_secret(key: GenerateKey, session: SessionDep) -> SigningSecretOut:
    return SigningSecretOut(secret=service.rotate_signing_secret(session, key))


@router.get("/{endpoint_id}", response_model=EndpointOut, summary="Get a webhook endpoint")
def get_endpoint(endpoint_id: str, key: ReadKey, session: SessionDep) -> EndpointOut:
    return _endpoint_out(service.get_endpoint(session, key, endpoint_id))


@router.patch("/{endpoint_id}", response_model=EndpointOut, summary="Update a webhook endpoint")
def update_endpoint(
    endpoint_id: str, body: EndpointUpdate, key: GenerateKey, session: SessionDep, settings: SettingsDep
) -> EndpointOut:
    """Change `url` or `events`, or set `enabled` (e.g. back to true after a 410 disabled it)."""
    return _endpoint_out(service.update_endpoint(session, key, endpoint_id, body, settings))


@router.delete("/{endpoint_id}", response_model=DeletedEndpoint, summary="Delete a webhook endpoint")
def delete_endpoint(endpoint_id: str, key: GenerateKey, session: SessionDep) -> DeletedEndpoint:
    service.delete_endpoint(session, key, endpoint_id)
    return DeletedEndpoint(id=endpoint_id)


@router.post(
    "/{endpoint_id}/rotate_secret", response_model=EndpointWithSecret, summary="Rotate an endpoint's secret"
)
def rotate_secret(
    endpoint_id: str, key: GenerateKey, session: SessionDep, body: RotateSecret | None = None
) -> EndpointWithSecret:
    """A new `whsec_...` secret, shown once; the old one stops working now, or after 24 h if asked."""
    keep_old = body.keep_old_secret_active_for_24_hours if body is not None else False
    return _with_secret(service.rotate_secret(session, key, endpoint_id, keep_old=keep_old))


@router.get("/{endpoint_id}/deliveries", response_model=DeliveryList, summary="The delivery log")
def list_deliveries(
    endpoint_id: str,
    key: ReadKey,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 20,
    after: Annotated[str | None, Query(description="The `next_cursor` of the previous page.")] = None,
) -> DeliveryList:
    """Deliveries newest first, each with its attempts (status code, latency, start of the answer, error).

    `default` lists the deliveries to per-request `webhook_url`s.
    """
    rows, has_more = service.list_deliveries(session, key, endpoint_id, limit=limit, after=after)
    return DeliveryList(
        data=[_delivery_out(row) for row in rows],
        has_more=has_more,
        next_cursor=rows[-1].id if has_more else None,
    )


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryOut,
    summary="Send a delivery again",
)
def redeliver(endpoint_id: str, delivery_id: str, key: GenerateKey, session: SessionDep) -> DeliveryOut:
    """Starts the delivery over: an attempt now, then the retry schedule if it fails."""
    return _delivery_out(service.redeliver(session, key, endpoint_id, delivery_id))
