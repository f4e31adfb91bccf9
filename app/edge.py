"""The outermost middleware: what every response gets, errors and refusals included.

- a request id: the client's `X-Request-ID` when it is a sane token, else a new one; bound to the log
  context for the whole request and echoed in the response's `X-Request-ID`;
- security headers (`X-Content-Type-Options`, `X-Frame-Options`, `Referrer-Policy`, and HSTS when
  KINEMA_HSTS_MAX_AGE_S is set), where the handler set none of its own;
- request metrics (a counter and a latency histogram by route template) and one access-log line.

Its per-request work is a few dictionary look-ups: no database or Redis call.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

import structlog
from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.errors import APIError
from app.metrics.registry import HTTP_REQUEST_DURATION, HTTP_REQUESTS, UNMATCHED_ROUTE

log = logging.getLogger("kinema.access")

REQUEST_ID_HEADER = b"x-request-id"
_SANE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
# Probes and scrapes come every few seconds: their access lines are debug-level noise.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_DOCS_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
# Path parameters that name a job, whatever the endpoint calls them.
_JOB_ID_PARAMS = ("job_id", "video_id")


def security_headers(settings: Settings) -> list[tuple[bytes, bytes]]:
    """The headers every response carries unless its handler set them."""
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    ]
    if settings.hsts_max_age_s > 0:
        headers.append((b"strict-transport-security", f"max-age={settings.hsts_max_age_s}".encode()))
    return headers


def request_id_of(scope: Scope) -> str:
    """The client's X-Request-ID when it is a sane token (so it can join logs across services)."""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER and _SANE_REQUEST_ID.match(value):
            return value.decode()
    return uuid.uuid4().hex


def route_of(scope: Scope) -> str:
    """The matched route's template, e.g. `/jobs/{job_id}`; UNMATCHED_ROUTE when none matched."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if isinstance(path, str):
        return path
    # FastAPI's own pages are plain routes its router does not record in the scope; their paths are fixed.
    return scope["path"] if scope["path"] in _DOCS_PATHS else UNMATCHED_ROUTE


async def bind_path_ids(request: Request) -> None:
    """An app-wide dependency: the ids in the path (the job's above all) join the log context."""
    params = request.path_params
    if not params:
        return
    ids = {("job_id" if name in _JOB_ID_PARAMS else name): value for name, value in params.items()}
    structlog.contextvars.bind_contextvars(**ids)


class EdgeMiddleware:
    """Request id, security headers, metrics and the access log, for every HTTP response."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.headers = security_headers(settings)
        self.access_log = settings.access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_of(scope)
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        status = 0  # no response started yet
        response_s = 0.0
        location = b""

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_s, location
            if message["type"] == "http.response.start":
                status = message["status"]
                response_s = time.perf_counter() - started
                headers = message.setdefault("headers", [])
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in self.headers if h[0] not in present)
                headers.append((REQUEST_ID_HEADER, request_id.encode()))
                location = next((v for n, v in headers if n.lower() == b"location"), b"")
            await send(message)

        failed = False
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            failed = True
            if not status:
                await _internal_error(send_with_headers)
            # The request id stays bound: the app's error handler logs the traceback after this.
            raise
        finally:
            route = route_of(scope)
            method = scope["method"]
            # No response at all: the client went away first (counted as nginx does, 499).
            HTTP_REQUESTS.labels(method, route, str(status or 499)).inc()
            HTTP_REQUEST_DURATION.labels(method, route).observe(response_s)
            if self.access_log:
                self._log(scope, route, status, started, location)
            if not failed:
                structlog.contextvars.reset_contextvars(**tokens)

    @staticmethod
    def _log(scope: Scope, route: str, status: int, started: float, location: bytes) -> None:
        level = logging.DEBUG if scope["path"] in _QUIET_PATHS else logging.INFO
        if not log.isEnabledFor(level):
            return
        fields: dict[str, Any] = {
            "method": scope["method"],
            "path": scope["path"],
            "route": route,
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        }
        state = scope.get("state") or {}
        if "api_key_id" in state:
            fields["api_key_id"] = state["api_key_id"]
        if location.startswith(b"/jobs/"):
            fields["job_id"] = location[len(b"/jobs/") :].decode(errors="replace")
        client = scope.get("client")
        if client:
            fields["client"] = client[0]
        log.log(level, "request", extra=fields)


async def _internal_error(send: Send) -> None:
    """The API's 500, sent here so that it too carries the request id and security headers."""
    body = json.dumps(APIError("The server had an error while processing your request.").body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
