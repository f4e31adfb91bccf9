"""Downloading `image_url` / `video_url` inputs: http(s), public addresses only, bounded in size and time.

Every hop (the URL, then each redirect) is checked by the webhook guard (`app/webhooks/targets.py`) and the
request connects to the address that was checked, so neither a redirect nor a name re-pointed between the
check and the connection (DNS rebinding) reaches an address the check refused. Cloud metadata addresses
are refused even when KINEMA_INPUT_ALLOW_PRIVATE_URLS lets private ones through. `data:` URLs (base64)
are decoded without any connection.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import ssl
import time
from functools import cache
from pathlib import Path
from urllib.parse import urljoin

import certifi
import httpx

from app import __version__
from app.config import Settings
from app.errors import InputTooLarge, InvalidRequest
from app.webhooks.targets import METADATA_ADDRESSES, HostNotFound, Target, TargetRefused, check_target

MAX_REDIRECTS = 3


@cache
def _tls_context() -> ssl.SSLContext:
    # Built once per process: loading the CA bundle costs more than a small download.
    return ssl.create_default_context(cafile=certifi.where())


def download(url: str, dest: Path, *, max_bytes: int, settings: Settings, param: str) -> None:
    """Write what `url` serves to `dest`; a 4xx naming `param` if it is refused, fails, or is too large.

    The whole download, redirects included, must finish within KINEMA_INPUT_FETCH_TIMEOUT_S: checked as
    each piece arrives, and a server that goes silent is waited for at most the time that was left.
    """
    if url.strip().lower().startswith("data:"):
        _write_data_url(url.strip(), dest, max_bytes=max_bytes, param=param)
        return
    deadline = time.monotonic() + settings.input_fetch_timeout_s
    for _ in range(MAX_REDIRECTS + 1):
        target = _checked(url, settings, param)
        location = _get(target, dest, max_bytes=max_bytes, deadline=deadline, param=param)
        if location is None:
            return
        url = urljoin(url, location)
    raise InvalidRequest(
        f"{param}: more than {MAX_REDIRECTS} redirects.", param=param, code="input_fetch_failed"
    )


def _checked(url: str, settings: Settings, param: str) -> Target:
    try:
        target = check_target(url, allow_private=settings.input_allow_private_urls, purpose="Input")
    except HostNotFound as exc:
        raise InvalidRequest(f"{param}: {exc}", param=param, code="input_fetch_failed") from exc
    except TargetRefused as exc:
        raise InvalidRequest(f"{param}: {exc}", param=param, code="url_not_allowed") from exc
    for address in target.addresses:
        if ipaddress.ip_address(address) in METADATA_ADDRESSES:
            raise InvalidRequest(
                f"{param}: the host {target.host!r} resolves to {address}, a cloud metadata address.",
                param=param,
                code="url_not_allowed",
            )
    return target


def _get(target: Target, dest: Path, *, max_bytes: int, deadline: float, param: str) -> str | None:
    """GET the target from its checked addresses into `dest`; the Location of a redirect, else None."""
    error: Exception | None = None
    for address in target.addresses:
        try:
            return _get_from(target, address, dest, max_bytes=max_bytes, deadline=deadline, param=param)
        except httpx.ConnectError as exc:
            error = exc  # the next address, as a browser would
        except httpx.TimeoutException as exc:
            raise _timed_out(param) from exc
        except httpx.HTTPError as exc:
            raise InvalidRequest(
                f"{param}: the download failed: {type(exc).__name__}: {exc}",
                param=param,
                code="input_fetch_failed",
            ) from exc
    raise InvalidRequest(
        f"{param}: cannot connect to {target.host!r}: {error}", param=param, code="input_fetch_failed"
    )


def _get_from(
    target: Target, address: str, dest: Path, *, max_bytes: int, deadline: float, param: str
) -> str | None:
    # The Host header and TLS (SNI and the certificate check) use the URL's name; the socket, the address.
    default_port = 443 if target.scheme == "https" else 80
    host = f"[{target.host}]" if ":" in target.host else target.host
    headers = {
        "host": host if target.port == default_port else f"{host}:{target.port}",
        "user-agent": f"Kinema/{__version__}",
        "accept-encoding": "identity",  # the byte limit counts what is stored, not a compressed stream
    }
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    timeout = max(0.001, deadline - time.monotonic())
    with (
        httpx.Client(
            timeout=timeout, follow_redirects=False, trust_env=False, verify=_tls_context()
        ) as client,
        client.stream(
            "GET",
            httpx.URL(target.url).copy_with(host=address),
            headers=headers,
            extensions=extensions,
        ) as response,
    ):
        if response.is_redirect:  # a 3xx with a Location: the caller checks where it points first
            return str(response.headers["location"])
        if response.status_code != 200:
            raise InvalidRequest(
                f"{param}: the server answered {response.status_code}.",
                param=param,
                code="input_fetch_failed",
            )
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise _too_large(param, max_bytes)
        size = 0
        with dest.open("wb") as out:
            for chunk in response.iter_raw():  # as it arrives (a chunk size would wait to fill it)
                size += len(chunk)
                if size > max_bytes:
                    raise _too_large(param, max_bytes)
                if time.monotonic() > deadline:
                    raise _timed_out(param)
                out.write(chunk)
    return None


def _write_data_url(url: str, dest: Path, *, max_bytes: int, param: str) -> None:
    header, comma, data = url.partition(",")
    if not comma or not header.lower().endswith(";base64"):
        raise InvalidRequest(
            f"{param}: a data URL must be base64 (data:<type>;base64,<data>).",
            param=param,
            code="invalid_url",
        )
    if len(data) * 3 // 4 > max_bytes + 3:
        raise _too_large(param, max_bytes)
    try:
        content = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(
            f"{param}: the data URL is not valid base64.", param=param, code="invalid_url"
        ) from exc
    if len(content) > max_bytes:
        raise _too_large(param, max_bytes)
    dest.write_bytes(content)


def _too_large(param: str, max_bytes: int) -> InputTooLarge:
    return InputTooLarge(f"{param} is larger than {max_bytes} bytes.", param=param)


def _timed_out(param: str) -> InvalidRequest:
    return InvalidRequest(
        f"{param}: the download did not finish in time.", param=param, code="input_fetch_timeout"
    )
