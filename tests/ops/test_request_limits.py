"""Request limits: body size, header size, slow uploads; and what every response carries (security
headers, CORS only when configured)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from app.config import get_settings
from app.main import create_app
from tests.jobs.served import committed_key, served_app


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_json_body_over_the_limit_is_413_before_anything_runs(client: Any, make_key: Any) -> None:
    _, key = make_key()
    big = b'{"prompt": "' + b"a" * (1024 * 1024) + b'", "duration": 1}'
    response = client.post(
        "/generate", content=big, headers={**auth(key), "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert response.headers["connection"] == "close"


def test_multipart_bodies_get_the_upload_limit_not_the_json_one(client: Any, make_key: Any) -> None:
    _, key = make_key()
    image = b"\x89PNG\r\n\x1a\n" + b"\0" * (
        2 * 1024 * 1024
    )  # 2 MiB: over the JSON limit, under the image one
    response = client.post(
        "/generate", headers=auth(key), data={"prompt": "a red ball"}, files={"image": ("a.png", image)}
    )
    assert response.status_code != 413, response.text  # refused for being no real PNG, not for its size


def test_headers_over_the_limit_are_431(client: Any) -> None:
    response = client.get("/healthz", headers={"X-Padding": "a" * 20_000})
    assert response.status_code == 431
    assert response.json()["error"]["code"] == "headers_too_large"
    assert client.get("/healthz", headers={"X-Padding": "a" * 8_000}).status_code == 200


def test_security_headers_on_every_response(client: Any, make_key: Any) -> None:
    _, key = make_key()
    responses = [
        client.get("/healthz"),
        client.get("/jobs", headers=auth(key)),
        client.get("/jobs"),  # 401
        client.get("/no/such/path"),  # 404
        client.post("/generate", headers=auth(key), json={"prompt": ""}),  # 400
        client.get("/openapi.json"),
        client.get("/metrics"),
    ]
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff", response.request.url
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "strict-transport-security" not in response.headers  # off unless configured
        assert response.headers["x-request-id"]


@pytest.fixture
def configured_client(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An app built with HSTS and one allowed CORS origin."""
    from fastapi.testclient import TestClient

    monkeypatch.setenv("KINEMA_HSTS_MAX_AGE_S", "31536000")
    monkeypatch.setenv("KINEMA_CORS_ORIGINS", "https://app.example.com, https://other.example.com")
    get_settings.cache_clear()
    with TestClient(create_app()) as client:
        yield client


def test_hsts_when_configured(configured_client: Any) -> None:
    response = configured_client.get("/healthz")
    assert response.headers["strict-transport-security"] == "max-age=31536000"


def test_cors_is_off_by_default(client: Any) -> None:
    preflight = client.options(
        "/jobs",
        headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    plain = client.get("/healthz", headers={"Origin": "https://app.example.com"})
    assert "access-control-allow-origin" not in plain.headers


def test_cors_allows_only_the_configured_origins(configured_client: Any) -> None:
    preflight = configured_client.options(
        "/generate",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    response = configured_client.get("/healthz", headers={"Origin": "https://app.example.com"})
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()
    stranger = configured_client.options(
        "/generate", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert stranger.headers.get("access-control-allow-origin") != "https://evil.example"


@pytest.fixture
def slow_server(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """The app over real HTTP with short body timeouts; yields (base URL, key)."""
    monkeypatch.setenv("KINEMA_REQUEST_BODY_IDLE_TIMEOUT_S", "0.5")
    monkeypatch.setenv("KINEMA_REQUEST_BODY_TIMEOUT_S", "2")
    get_settings.cache_clear()
    with committed_key("slow") as (_, key), served_app() as base_url:
        yield base_url, key


def _send_head(base_url: str, key: str, length: int) -> socket.socket:
    parts = urlsplit(base_url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.sendall(
        b"POST /generate HTTP/1.1\r\nHost: kinema\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {key}\r\nContent-Length: {length}\r\n\r\n".encode()
    )
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_stalled_upload_times_out_with_408_and_the_connection_closes(slow_server: tuple[str, str]) -> None:
    base_url, key = slow_server
    with _send_head(base_url, key, 200) as sock:
        sock.sendall(b'{"prompt": "a red')  # ...and nothing more
        started = time.monotonic()
        answer = _read_until_closed(sock)  # returns once the server closed the connection
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"request_timeout" in answer
    assert 0.4 < waited < 5


def test_a_dribbled_upload_times_out_in_all(slow_server: tuple[str, str]) -> None:
    base_url, key = slow_server
    with _send_head(base_url, key, 1000) as sock:
        started = time.monotonic()
        sock.settimeout(0.3)
        answer = b""
        while not answer and time.monotonic() - started < 8:
            try:
                sock.sendall(b" ")  # a byte every 0.3 s: never idle, never done
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert 1.5 < waited < 5


def test_a_chunked_body_is_cut_off_at_the_limit(slow_server: tuple[str, str]) -> None:
    base_url, key = slow_server

    def chunks() -> Iterator[bytes]:
        yield b'{"prompt": "'
        for _ in range(40):
            yield b"a" * 65536  # 2.5 MiB in all, no Content-Length

    response = httpx.post(
        f"{base_url}/generate",
        content=chunks(),
        headers={**auth(key), "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_the_server_refuses_oversized_headers(slow_server: tuple[str, str]) -> None:
    base_url, _ = slow_server
    response = httpx.get(f"{base_url}/healthz", headers={"X-Padding": "a" * 64_000}, timeout=10)
    assert response.status_code == 431
