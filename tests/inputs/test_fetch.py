"""URL inputs: http(s) only, no private addresses unless allowed, redirects re-checked, size and time bounded.

Files are served by a real HTTP server on 127.0.0.1 (tests/inputs/server.py); the positive cases allow
private addresses with KINEMA_INPUT_ALLOW_PRIVATE_URLS, as a development deployment would.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest

from app.errors import APIError
from app.inputs.fetch import MAX_REDIRECTS, download
from app.inputs.service import InputSource, receive
from tests.inputs import samples
from tests.inputs.server import Served


def _refusal(url: str, settings: Any, tmp_path: Path, *, max_bytes: int = 10**6) -> APIError:
    with pytest.raises(APIError) as caught:
        download(url, tmp_path / "out", max_bytes=max_bytes, settings=settings, param="image_url")
    assert caught.value.param == "image_url"
    assert 400 <= caught.value.status_code < 500
    return caught.value


def test_a_public_deployment_refuses_loopback_by_address_and_by_name(
    server: Served, input_settings: Any, tmp_path: Path
) -> None:
    server.files["cat.png"] = samples.image_bytes()
    settings = input_settings()
    for url in (server.url("/files/cat.png"), server.url("/files/cat.png").replace("127.0.0.1", "localhost")):
        error = _refusal(url, settings, tmp_path)
        assert error.code == "url_not_allowed" and "loopback" in error.message
    assert server.requests == []  # refused before connecting


@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/a.png",
        "http://0.0.0.0/",
    ],
)
def test_private_link_local_and_unspecified_addresses_are_refused(
    url: str, input_settings: Any, tmp_path: Path
) -> None:
    assert _refusal(url, input_settings(), tmp_path).code == "url_not_allowed"


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/cat.png",
        "gopher://example.com/",
        "cat.png",
        "http://u:p@host/",
    ],
)
def test_only_http_and_https_without_credentials(url: str, input_settings: Any, tmp_path: Path) -> None:
    settings = input_settings(input_allow_private_urls=True)
    assert _refusal(url, settings, tmp_path).code == "url_not_allowed"


def test_allowed_private_urls_download(server: Served, input_settings: Any, tmp_path: Path) -> None:
    server.files["cat.png"] = samples.image_bytes()
    download(
        server.url("/files/cat.png"),
        tmp_path / "out",
        max_bytes=10**6,
        settings=input_settings(input_allow_private_urls=True),
        param="image_url",
    )
    assert (tmp_path / "out").read_bytes() == server.files["cat.png"]


def test_redirects_are_followed_and_each_hop_is_checked(
    server: Served, input_settings: Any, tmp_path: Path
) -> None:
    settings = input_settings(input_allow_private_urls=True)
    server.files["cat.png"] = samples.image_bytes()
    download(
        server.url(f"/redirect?to={server.url('/files/cat.png')}"),
        tmp_path / "out",
        max_bytes=10**6,
        settings=settings,
        param="image_url",
    )
    assert (tmp_path / "out").read_bytes() == server.files["cat.png"]
    # A redirect to the metadata service (refused even where private addresses are allowed) or to a file.
    for target in ("http://169.254.169.254/latest/meta-data/iam", "file:///etc/passwd"):
        before = len(server.requests)
        error = _refusal(server.url(f"/redirect?to={target}"), settings, tmp_path)
        assert error.code == "url_not_allowed", target
        assert len(server.requests) == before + 1  # only the redirect itself was fetched


def test_a_public_deployment_does_not_follow_a_redirect_to_a_private_address(
    server: Served, input_settings: Any, tmp_path: Path
) -> None:
    # The first hop's check refuses it here; the same check runs on every later hop (test above).
    error = _refusal(server.url("/redirect?to=http://127.0.0.1:1/"), input_settings(), tmp_path)
    assert error.code == "url_not_allowed"


def test_too_many_redirects_fail(server: Served, input_settings: Any, tmp_path: Path) -> None:
    url = server.url("/files/cat.png")
    for _ in range(MAX_REDIRECTS + 1):
        url = server.url(f"/redirect?to={url}")
    server.files["cat.png"] = b"x"
    error = _refusal(url, input_settings(input_allow_private_urls=True), tmp_path)
    assert error.code == "input_fetch_failed" and "redirects" in error.message


def test_an_error_status_and_an_unknown_host_fail(
    server: Served, input_settings: Any, tmp_path: Path
) -> None:
    settings = input_settings(input_allow_private_urls=True)
    error = _refusal(server.url("/missing"), settings, tmp_path)
    assert error.code == "input_fetch_failed" and "404" in error.message
    assert _refusal("http://no-such-host.invalid/a.png", settings, tmp_path).code == "input_fetch_failed"


@pytest.mark.parametrize("path", ["/huge", "/endless"])
def test_a_download_over_the_byte_limit_is_stopped(
    path: str, server: Served, input_settings: Any, tmp_path: Path
) -> None:
    # /huge declares 10 GB (refused from the header); /endless streams chunks with no length (counted).
    started = time.monotonic()
    error = _refusal(
        server.url(path), input_settings(input_allow_private_urls=True), tmp_path, max_bytes=200_000
    )
    assert (error.status_code, error.code) == (413, "input_too_large")
    assert time.monotonic() - started < 5
    assert (tmp_path / "out").stat().st_size <= 200_000 if (tmp_path / "out").exists() else True


def test_a_slow_download_is_stopped_at_the_timeout(
    server: Served, input_settings: Any, tmp_path: Path
) -> None:
    settings = input_settings(input_allow_private_urls=True, input_fetch_timeout_s=1.0)
    started = time.monotonic()
    error = _refusal(server.url("/slow"), settings, tmp_path)
    elapsed = time.monotonic() - started
    assert error.code == "input_fetch_timeout"
    assert 0.9 < elapsed < 3.0


def test_a_base64_data_url_needs_no_connection(input_settings: Any, tmp_path: Path) -> None:
    png = samples.image_bytes()
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    with receive(
        InputSource(param="image_url", accepts=frozenset({"image"}), url=url), input_settings()
    ) as got:
        assert (got.width, got.height) == (64, 48)
    assert _refusal("data:image/png,rawbytes", input_settings(), tmp_path).code == "invalid_url"
    assert _refusal(url, input_settings(), tmp_path, max_bytes=100).code == "input_too_large"


def test_what_a_url_serves_is_checked_like_an_upload(
    server: Served, input_settings: Any, tmp_path: Path
) -> None:
    server.files["cat.png"] = samples.SVG  # the name and the content type say nothing
    source = InputSource(param="image_url", accepts=frozenset({"image"}), url=server.url("/files/cat.png"))
    with pytest.raises(APIError) as caught, receive(source, input_settings(input_allow_private_urls=True)):
        pass
    assert (caught.value.code, caught.value.param) == ("unsupported_media_type", "image_url")
