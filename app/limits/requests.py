"""Limits on a request itself, before any handler trusts it: header size, body size and body time.

- Header lines together over KINEMA_MAX_HEADER_BYTES: 431 at once.
- A body over its limit (KINEMA_MAX_JSON_BODY_BYTES, or for multipart forms the largest upload any
  endpoint takes): 413 at once when Content-Length says so, else as soon as the streamed bytes pass it.
- A body that stalls longer than KINEMA_REQUEST_BODY_IDLE_TIMEOUT_S between two chunks, or takes longer
  than KINEMA_REQUEST_BODY_TIMEOUT_S in all (a slow-loris upload): 408, and the connection is closed.

Refusals found while the handler reads the body are raised from `receive` as `RequestRefused`, which
FastAPI lets through its body parsing and `refused_response` turns into the API's error shape.
"""

from __future__ import annotations

import asyncio
import json
import time

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.errors import APIError, HeadersTooLarge, InputTooLarge, RequestTimeout

_FORM_PREFIX = b"multipart/form-data"


class RequestRefused(HTTPException):
    """A request limit, found while the body was read; carries the API error to answer with."""

    def __init__(self, error: APIError) -> None:
        super().__init__(status_code=error.status_code, detail=error.message)
        self.error = error


async def refused_response(_: Request, exc: Exception) -> JSONResponse:
    """The exception handler for RequestRefused: the error shape, and the connection closed."""
    assert isinstance(exc, RequestRefused)
    return JSONResponse(exc.error.body(), status_code=exc.error.status_code, headers={"Connection": "close"})


class RequestLimitsMiddleware:
    """Enforces the header-size, body-size and body-time limits of `settings` on every HTTP request."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.max_header_bytes = settings.max_header_bytes
        self.max_json_bytes = settings.max_json_body_bytes
        self.max_form_bytes = settings.max_multipart_body_bytes
        self.idle_timeout_s = settings.request_body_idle_timeout_s
        self.total_timeout_s = settings.request_body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header_bytes = 0
        length: int | None = None
        chunked = False
        is_form = False
        for name, value in scope["headers"]:
            header_bytes += len(name) + len(value) + 4  # ": " and CRLF, as on the wire
            if name == b"content-length":
                length = int(value) if value.isdigit() else None
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"content-type":
                is_form = value.lower().startswith(_FORM_PREFIX)
        if header_bytes > self.max_header_bytes:
            error: APIError = HeadersTooLarge(
                f"The request's headers are {header_bytes} bytes; the limit is {self.max_header_bytes}."
            )
            await _answer(error, send)
            return
        limit = self.max_form_bytes if is_form else self.max_json_bytes
        if length is not None and length > limit:
            await _answer(_too_large(limit), send)
            return
        if not chunked and not length:
            await self.app(scope, receive, send)  # no body: nothing to count or time
            return
        await self.app(scope, _BodyReader(receive, limit, self.idle_timeout_s, self.total_timeout_s), send)


class _BodyReader:
    """`receive` with the body counted and timed; after the last chunk it passes messages straight on."""

    def __init__(self, receive: Receive, limit: int, idle_s: float, total_s: float) -> None:
        self.receive = receive
        self.limit = limit
        self.idle_s = idle_s
        self.deadline = time.monotonic() + total_s
        self.total_s = total_s
        self.received = 0
        self.done = False

    async def __call__(self) -> Message:
        if self.done:
            return await self.receive()  # e.g. waiting for the client to disconnect: never timed
        wait_s = min(self.idle_s, self.deadline - time.monotonic())
        try:
            async with asyncio.timeout(max(0.0, wait_s)):
                message = await self.receive()
        except TimeoutError:
            raise RequestRefused(
                RequestTimeout(
                    f"The request body did not arrive in time: at most {self.idle_s:g} s between chunks "
                    f"and {self.total_s:g} s in all."
                )
            ) from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                raise RequestRefused(_too_large(self.limit))
            self.done = not message.get("more_body", False)
        else:
            self.done = True
        return message


def _too_large(limit: int) -> InputTooLarge:
    return InputTooLarge(f"The request body is larger than {limit} bytes.", code="request_too_large")


async def _answer(error: APIError, send: Send) -> None:
    """Refuse before the app runs (the body is never read, so the connection closes)."""
    body = json.dumps(error.body()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
