"""A cap on requests the API is working on: past it, answer 503 at once instead of queueing.

An overloaded process that accepts everything makes every request slow (each waits for a thread and a
database connection behind all the others) until clients time out and retry, which adds load. With
the cap, the requests it takes stay fast and the rest get a `503 server_overloaded` with `Retry-After`
that clients (the openai SDK among them) retry. A request counts until its response starts, so a long
event stream holds no slot. Health checks and metrics scrapes are never refused.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ServiceUnavailable

# Probes and the metrics scrape: an overloaded API must still say so.
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
RETRY_AFTER_S = 1


class InFlightLimitMiddleware:
    """Refuses an HTTP request with 503 while `limit` others have not started their response."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0  # only touched on the event loop: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.limit <= 0 or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            await _refuse(send)
            return
        self.in_flight += 1
        counted = True

        async def send_and_release(message: Message) -> None:
            nonlocal counted
            if counted and message["type"] == "http.response.start":
                counted = False
                self.in_flight -= 1
            await send(message)

        try:
            await self.app(scope, receive, send_and_release)
        finally:
            if counted:
                self.in_flight -= 1


async def _refuse(send: Send) -> None:
    error = ServiceUnavailable(
        "The server is at its limit of requests in progress; retry shortly.", code="server_overloaded"
    )
    body = json.dumps(error.body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(RETRY_AFTER_S).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
