"""`GET /metrics`: Prometheus text format. Not in the OpenAPI schema; optionally behind a token."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool

from app.config import get_settings
from app.errors import AuthenticationFailed
from app.metrics.collectors import StateCollector
from app.metrics.exposition import scrape_registry

router = APIRouter(include_in_schema=False)

_state = CollectorRegistry(auto_describe=False)
_state.register(StateCollector())


def _render() -> bytes:
    # The process (or multiprocess) metrics, then the gauges read from the database and broker now.
    return generate_latest(scrape_registry()) + generate_latest(_state)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Every metric of this API deployment, for Prometheus to scrape."""
    token = get_settings().metrics_token
    if token:
        presented = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(presented.encode(), token.encode()):
            raise AuthenticationFailed("Send the metrics token as 'Authorization: Bearer <token>'.")
    return Response(await run_in_threadpool(_render), media_type=CONTENT_TYPE_LATEST)
