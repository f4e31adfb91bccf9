"""Delivering the outbox: one signed POST per attempt, retries on a schedule, and the sweeper.

The Celery tasks in `worker/tasks/webhooks.py` call `deliver` and `sweep`; both are safe to run twice
at once: an attempt first takes a lease on the row with a compare-and-set, so a duplicate task finds
nothing to do.
"""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

import certifi
import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app import __version__
from app.config import Settings
from app.db import utcnow
from app.queue import QueueUnavailable, enqueue_webhook_delivery
from app.webhooks.events import send_after_commit
from app.webhooks.models import FAILED, PENDING, SUCCEEDED, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.webhooks.service import signing_secret
from app.webhooks.signing import sign_headers
from app.webhooks.targets import HostNotFound, Target, TargetRefused, check_target

log = logging.getLogger(__name__)

RESPONSE_BODY_LIMIT = 1024  # characters of the receiver's answer kept in the log
# Longer waits are left to the sweeper: brokers redeliver long-delayed tasks and workers hold them in memory.
COUNTDOWN_MAX_S = 900
# A lease outlives the request's timeout by this much before another task may take the delivery over.
LEASE_MARGIN_S = 30
SWEEP_BATCH = 500


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one POST came to."""

    status_code: int | None
    latency_ms: int
    response_body: str | None
    error: str | None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@cache
def _tls_context() -> ssl.SSLContext:
    # Built once per process: loading the CA bundle costs more than a typical delivery.
    return ssl.create_default_context(cafile=certifi.where())


def post(target: Target, body: str, headers: dict[str, str], *, timeout_s: float) -> AttemptResult:
    """POST `body` to the target's checked addresses, the next one only if a connection is refused."""
    started = time.monotonic()
    result = AttemptResult(None, 0, None, "The host has no address to connect to.")
    for address in target.addresses:
        try:
            return _post_to(target, address, body, headers, timeout_s=timeout_s, started=started)
        except httpx.ConnectError as exc:
            result = AttemptResult(None, _elapsed_ms(started), None, f"ConnectError: {exc}")
        except httpx.TimeoutException:
            return AttemptResult(None, _elapsed_ms(started), None, f"No answer within {timeout_s:g} s.")
        except httpx.HTTPError as exc:
            return AttemptResult(None, _elapsed_ms(started), None, f"{type(exc).__name__}: {exc}")
    return result


def _post_to(
    target: Target, address: str, body: str, headers: dict[str, str], *, timeout_s: float, started: float
) -> AttemptResult:
    # Connect to the address that was checked (no redirects, no proxies from the environment); the
    # Host header and TLS (SNI and the certificate check) still use the URL's host name.
    default_port = 443 if target.scheme == "https" else 80
    host = f"[{target.host}]" if ":" in target.host else target.host  # an IPv6 literal
    request_headers = {
        **headers,
        "content-type": "application/json",
        "user-agent": f"Kinema-Webhooks/{__version__}",
        "host": host if target.port == default_port else f"{host}:{target.port}",
    }
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    with (
        httpx.Client(
            timeout=timeout_s, follow_redirects=False, trust_env=False, verify=_tls_context()
        ) as client,
        client.stream(
            "POST",
            httpx.URL(target.url).copy_with(host=address),
            content=body.encode(),
            headers=request_headers,
            extensions=extensions,
        ) as response,
    ):
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            # Enough for the log; a receiver that drips its answer does not hold the worker.
            if size >= RESPONSE_BODY_LIMIT * 4 or time.monotonic() - started > timeout_s:
                break
        text = b"".join(chunks).decode("utf-8", errors="replace")[:RESPONSE_BODY_LIMIT]
        return AttemptResult(response.status_code, _elapsed_ms(started), text, None)


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _secrets(
    session: Session, delivery: WebhookDelivery, endpoint: WebhookEndpoint | None, now: datetime
) -> list[str]:
    if endpoint is None:
        return [signing_secret(session, delivery.api_key_id)]
    keys = [endpoint.secret]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and expires > now:
        keys.append(endpoint.previous_secret)
    return keys


def _claim(session: Session, delivery_id: str, settings: Settings) -> WebhookDelivery | None:
    now = utcnow()
    lease = now + timedelta(seconds=settings.webhook_timeout_s + LEASE_MARGIN_S)
    result = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until < now),
        )
        .values(locked_until=lease)
    )
    session.commit()
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    return session.scalar(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .execution_options(populate_existing=True)
    )


def _give_up(session: Session, delivery: WebhookDelivery, error: str) -> str:
    delivery.status = FAILED
    delivery.locked_until = None
    delivery.last_error = error
    session.commit()
    return FAILED


def deliver(session: Session, delivery_id: str, settings: Settings) -> str | None:
    """Make the next attempt of a due delivery; its status afterwards, or None if there was nothing to do."""
    delivery = _claim(session, delivery_id, settings)
    if delivery is None:
        return None
    endpoint = None
    if delivery.endpoint_id is not None:
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
        if endpoint is None:
            return _give_up(session, delivery, "The endpoint was deleted.")
        if not endpoint.enabled:
            return _give_up(session, delivery, f"The endpoint is disabled: {endpoint.disabled_reason}")
    url = endpoint.url if endpoint is not None else delivery.url or ""
    try:
        target = check_target(url, allow_private=settings.webhook_allow_private_targets)
    except HostNotFound as exc:
        # DNS may answer again later: an ordinary failed attempt, retried on the schedule.
        session.commit()
        return _record(session, delivery, endpoint, url, AttemptResult(None, 0, None, str(exc)), settings)
    except TargetRefused as exc:
        # Policy, not a passing fault: retrying would be refused the same way.
        delivery.attempts.append(_attempt_row(delivery, url, AttemptResult(None, 0, None, f"Refused: {exc}")))
        delivery.attempt_count += 1
        return _give_up(session, delivery, f"Refused: {exc}")
    now = utcnow()
    headers = sign_headers(
        _secrets(session, delivery, endpoint, now),
        message_id=delivery.event_id,
        timestamp=now,
        body=delivery.payload,
    )
    body = delivery.payload
    session.commit()  # hold no transaction open during the request
    result = post(target, body, headers, timeout_s=settings.webhook_timeout_s)
    return _record(session, delivery, endpoint, url, result, settings)


def _attempt_row(delivery: WebhookDelivery, url: str, result: AttemptResult) -> WebhookAttempt:
    return WebhookAttempt(
        delivery_id=delivery.id,
        number=delivery.attempt_count + 1,
        url=url,
        attempted_at=utcnow(),
        status_code=result.status_code,
        latency_ms=result.latency_ms,
        response_body=result.response_body,
        error=result.error,
    )


def _record(
    session: Session,
    delivery: WebhookDelivery,
    endpoint: WebhookEndpoint | None,
    url: str,
    result: AttemptResult,
    settings: Settings,
) -> str:
    delivery.attempts.append(_attempt_row(delivery, url, result))
    delivery.attempt_count += 1
    delivery.cycle_attempts += 1
    now = utcnow()
    if result.succeeded:
        delivery.status = SUCCEEDED
        delivery.delivered_at = now
        delivery.locked_until = None
        delivery.last_error = None
        session.commit()
        return SUCCEEDED
    error = result.error or f"The receiver answered {result.status_code}."
    if result.status_code == 410:
        # 410 Gone: the receiver asks us to stop sending there.
        if endpoint is not None:
            endpoint.enabled = False
            endpoint.disabled_reason = (
                f"The endpoint answered 410 Gone at {now.isoformat(timespec='seconds')}."
            )
        return _give_up(session, delivery, error)
    schedule = settings.webhook_retry_schedule_s
    if delivery.cycle_attempts > len(schedule):
        return _give_up(session, delivery, f"{error} No retries left.")
    delay = schedule[delivery.cycle_attempts - 1]
    delivery.next_attempt_at = now + timedelta(seconds=delay)
    delivery.locked_until = None
    delivery.last_error = error
    countdown = delay <= COUNTDOWN_MAX_S
    # A task sent with a countdown runs at the next attempt; a longer wait is the sweeper's to send.
    delivery.dispatched_at = delivery.next_attempt_at if countdown else None
    session.commit()
    if countdown:
        try:
            enqueue_webhook_delivery(delivery.id, countdown=delay)
        except QueueUnavailable as exc:
            log.warning(
                "retry of webhook delivery %s not sent (%s); the sweeper will send it", delivery.id, exc
            )
    return PENDING


def sweep(session: Session, settings: Settings) -> list[str]:
    """Send the tasks of deliveries that are due, not in flight, and whose last task never started."""
    now = utcnow()
    stale = now - timedelta(seconds=settings.webhook_redispatch_after_s)
    ids = list(
        session.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status == PENDING,
                WebhookDelivery.next_attempt_at <= now,
                or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until < now),
                or_(WebhookDelivery.dispatched_at.is_(None), WebhookDelivery.dispatched_at < stale),
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(SWEEP_BATCH)
        )
    )
    if ids:
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(ids)).values(dispatched_at=now))
        send_after_commit(session, ids)
    session.commit()
    if ids:
        log.info("webhook sweeper sent %d deliveries again", len(ids))
    return ids
