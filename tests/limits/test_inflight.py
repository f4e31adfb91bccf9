"""The in-flight cap: past it a request gets a 503 JSON error at once; a started response frees its slot."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from app.limits.inflight import InFlightLimitMiddleware


def _app(release: asyncio.Event, started: list[str]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        started.append(scope["path"])
        if scope["path"] == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await release.wait()  # a long event stream: its response has started
            await send({"type": "http.response.body", "body": b"end"})
            return
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def test_requests_past_the_cap_get_503_and_slots_free_when_responses_start() -> None:
    async def scenario() -> None:
        release, started = asyncio.Event(), []
        middleware = InFlightLimitMiddleware(_app(release, started), limit=2)
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            slow = [asyncio.create_task(client.get("/work")) for _ in range(2)]
            while len(started) < 2:
                await asyncio.sleep(0.01)
            refused = await client.post("/generate", json={})
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["code"] == "server_overloaded"
            assert "/generate" not in started  # refused before the app saw it
            health = asyncio.create_task(client.get("/healthz"))  # never refused
            while "/healthz" not in started:
                await asyncio.sleep(0.01)
            release.set()
            assert [r.status_code for r in await asyncio.gather(*slow, health)] == [200, 200, 200]
            assert middleware.in_flight == 0

    asyncio.run(scenario())


def test_a_started_stream_holds_no_slot() -> None:
    async def scenario() -> None:
        release, started = asyncio.Event(), []
        middleware = InFlightLimitMiddleware(_app(release, started), limit=1)

        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "path": "/stream", "method": "GET", "headers": []}
        stream = asyncio.create_task(middleware(scope, receive, send))
        while not sent:
            await asyncio.sleep(0.01)
        assert middleware.in_flight == 0  # streaming, but no longer counted
        release.set()
        await stream

    asyncio.run(scenario())
