"""Webhook endpoints as the API manages them, the delivery log, manual redelivery, and signing secrets."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.api_keys.models import ApiKey
from app.config import Settings
from app.db import utcnow
from app.errors import Conflict, InvalidRequest, NotFound
from app.webhooks.events import send_after_commit
from app.webhooks.models import PENDING, WebhookDelivery, WebhookEndpoint, WebhookSigningSecret, new_id
from app.webhooks.schemas import EndpointCreate, EndpointUpdate
from app.webhooks.signing import new_secret
from app.webhooks.targets import checked_url

MAX_PAGE = 100
# The pseudo endpoint id under which per-request `webhook_url` deliveries are listed.
DEFAULT_ENDPOINT = "default"
ROTATION_OVERLAP = timedelta(hours=24)


def _unique(events: list[str]) -> list[str]:
    return list(dict.fromkeys(events))


def create_endpoint(
    session: Session, key: ApiKey, body: EndpointCreate, settings: Settings
) -> WebhookEndpoint:
    """Register an endpoint with a fresh secret (the caller shows it once)."""
    endpoint = WebhookEndpoint(
        id=new_id("we"),
        api_key_id=key.id,
        url=checked_url(body.url, settings, param="url"),
        events=_unique(list(body.events)),
        secret=new_secret(),
        enabled=True,
    )
    session.add(endpoint)
    session.commit()
    return endpoint


def list_endpoints(session: Session, key: ApiKey) -> list[WebhookEndpoint]:
    """The caller's endpoints, oldest first."""
    return list(
        session.scalars(
            select(WebhookEndpoint).where(WebhookEndpoint.api_key_id == key.id).order_by(WebhookEndpoint.id)
        )
    )


def get_endpoint(session: Session, key: ApiKey, endpoint_id: str) -> WebhookEndpoint:
    """The caller's endpoint; another key's does not exist for this caller."""
    endpoint = session.scalar(
        select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.api_key_id == key.id)
    )
    if endpoint is None:
        raise NotFound(f"No webhook endpoint with id {endpoint_id!r}.", param="id")
    return endpoint


def update_endpoint(
    session: Session, key: ApiKey, endpoint_id: str, body: EndpointUpdate, settings: Settings
) -> WebhookEndpoint:
    """Change the URL, the events, or re-enable (or disable) the endpoint."""
    endpoint = get_endpoint(session, key, endpoint_id)
    if body.url is not None:
        endpoint.url = checked_url(body.url, settings, param="url")
    if body.events is not None:
        endpoint.events = _unique(list(body.events))
    if body.enabled is not None and body.enabled != endpoint.enabled:
        endpoint.enabled = body.enabled
        endpoint.disabled_reason = None if body.enabled else "Disabled through the API."
    session.commit()
    return endpoint


def delete_endpoint(session: Session, key: ApiKey, endpoint_id: str) -> None:
    """Remove the endpoint and its delivery log; events still pending for it are dropped."""
    session.delete(get_endpoint(session, key, endpoint_id))
    session.commit()


def rotate_secret(session: Session, key: ApiKey, endpoint_id: str, *, keep_old: bool) -> WebhookEndpoint:
    """A new secret; with `keep_old`, deliveries are signed with both for 24 hours."""
    endpoint = get_endpoint(session, key, endpoint_id)
    if keep_old:
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = utcnow() + ROTATION_OVERLAP
    else:
        endpoint.previous_secret = endpoint.previous_secret_expires_at = None
    endpoint.secret = new_secret()
    session.commit()
    return endpoint


def signing_secret(session: Session, api_key_id: str) -> str:
    """The key's secret for per-request `webhook_url` deliveries, created on first use."""
    row = session.get(WebhookSigningSecret, api_key_id)
    if row is not None:
        return row.secret
    try:
        # A savepoint: two first uses at once both insert, and the loser reads the winner's row.
        with session.begin_nested():
            session.add(WebhookSigningSecret(api_key_id=api_key_id, secret=new_secret()))
    except IntegrityError:
        pass
    row = session.get(WebhookSigningSecret, api_key_id, populate_existing=True)
    assert row is not None
    return row.secret


def rotate_signing_secret(session: Session, key: ApiKey) -> str:
    """Replace the key's per-request signing secret."""
    secret = signing_secret(session, key.id)
    row = session.get(WebhookSigningSecret, key.id)
    assert row is not None and row.secret == secret
    row.secret = new_secret()
    session.commit()
    return row.secret


def _deliveries_of(session: Session, key: ApiKey, endpoint_id: str) -> tuple[bool, str | None]:
    """(per-request?, endpoint id) for the listing, after checking the caller owns the endpoint."""
    if endpoint_id == DEFAULT_ENDPOINT:
        return True, None
    return False, get_endpoint(session, key, endpoint_id).id


def list_deliveries(
    session: Session, key: ApiKey, endpoint_id: str, *, limit: int, after: str | None
) -> tuple[list[WebhookDelivery], bool]:
    """An endpoint's deliveries (or, for `default`, those to per-request URLs), newest first."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}.", param="limit")
    per_request, owned_id = _deliveries_of(session, key, endpoint_id)
    query = select(WebhookDelivery).where(WebhookDelivery.api_key_id == key.id)
    if per_request:
        query = query.where(WebhookDelivery.endpoint_id.is_(None))
    else:
        query = query.where(WebhookDelivery.endpoint_id == owned_id)
    if after:
        query = query.where(WebhookDelivery.id < after)
    rows = list(session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def redeliver(session: Session, key: ApiKey, endpoint_id: str, delivery_id: str) -> WebhookDelivery:
    """Start a delivery over (a new retry cycle, first attempt now), whatever became of it."""
    per_request, owned_id = _deliveries_of(session, key, endpoint_id)
    delivery = session.scalar(
        select(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.api_key_id == key.id,
            WebhookDelivery.endpoint_id.is_(None) if per_request else WebhookDelivery.endpoint_id == owned_id,
        )
    )
    if delivery is None:
        raise NotFound(f"No delivery with id {delivery_id!r} for this endpoint.", param="delivery_id")
    now = utcnow()
    if delivery.locked_until is not None and delivery.locked_until > now:
        raise Conflict("This delivery is being attempted right now.", param="delivery_id", code="in_flight")
    if not per_request:
        endpoint = get_endpoint(session, key, endpoint_id)
        if not endpoint.enabled:
            raise Conflict(
                f"The endpoint is disabled ({endpoint.disabled_reason}); enable it first.",
                param="id",
                code="endpoint_disabled",
            )
    delivery.status = PENDING
    delivery.cycle_attempts = 0
    delivery.next_attempt_at = now
    delivery.dispatched_at = now
    delivery.locked_until = None
    send_after_commit(session, [delivery.id])
    session.commit()
    return delivery
