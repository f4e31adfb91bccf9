"""The request-rate headers on every authenticated response, whatever produced it (errors included)."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.limits.rate import STATE_KEY, RateStatus


class RateLimitHeadersMiddleware:
    """Adds `x-ratelimit-*-requests` from the status the auth dependency left in the request state."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The same dict `request.state` writes to, so the dependency's status is visible here.
        state = scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            status = state.get(STATE_KEY)
            if message["type"] == "http.response.start" and isinstance(status, RateStatus):
                headers = MutableHeaders(scope=message)
                for name, value in status.headers().items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
