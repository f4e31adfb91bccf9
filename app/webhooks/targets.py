"""Which URLs Kinema connects to (webhooks, input downloads): http(s) only, and (unless allowed) no
private or metadata addresses.

Checked when a URL is registered and again just before each delivery, on the addresses the name
resolves to then; the delivery connects to the address that was checked, so a name that is re-pointed
at an internal address between the check and the connection (DNS rebinding) gains nothing.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.config import Settings
from app.errors import InvalidRequest

MAX_URL_LENGTH = 2048
# Cloud instance-metadata services, named even where a broader rule already covers them.
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(Exception):
    """The URL is not one Kinema will send webhooks to; the message says why."""


class HostNotFound(TargetRefused):
    """The host name does not resolve (now): refused at registration, retried at delivery."""


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL and the addresses to connect to, in the resolver's order."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def refusal_reason(address: IPAddress) -> str | None:
    """Why `address` is not a public unicast address, or None when it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return refusal_reason(address.ipv4_mapped)
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    checks = (
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_unspecified, "an unspecified address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
        # Shared (carrier-grade NAT), documentation and benchmarking ranges: not the internet either.
        (not address.is_global, "not a public address"),
    )
    return next((reason for refused, reason in checks if refused), None)


def _split(url: str, purpose: str) -> tuple[str, str, int]:
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"The URL is not valid: {exc}.") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TargetRefused(f"{purpose} URLs must use http or https.")
    if not parts.hostname:
        raise TargetRefused("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused(f"{purpose} URLs cannot carry credentials.")
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80)


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise HostNotFound(f"The host {host!r} does not resolve: {exc}.") from exc
    # Drop any IPv6 zone id (`fe80::1%eth0`) before parsing.
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    return list(dict.fromkeys(addresses))


def check_target(url: str, *, allow_private: bool, purpose: str = "Webhook") -> Target:
    """The URL resolved and checked; TargetRefused if any address it resolves to is not allowed.

    `purpose` names what the URL is for in the refusal ("Webhook", "Input").
    """
    scheme, host, port = _split(url, purpose)
    addresses = _resolve(host, port)
    if not addresses:
        raise HostNotFound(f"The host {host!r} does not resolve.")
    if not allow_private:
        for address in addresses:
            reason = refusal_reason(address)
            if reason is not None:
                # One bad address is enough: the resolver may hand it out on the next lookup.
                raise TargetRefused(
                    f"The host {host!r} resolves to {address}, {reason}; "
                    f"{purpose.lower()} URLs may point to public addresses only."
                )
    return Target(url=url, scheme=scheme, host=host, port=port, addresses=tuple(map(str, addresses)))


def checked_url(url: str, settings: Settings, *, param: str) -> str:
    """`url` if the deployment sends webhooks there, else a 400 naming `param`."""
    try:
        check_target(url, allow_private=settings.webhook_allow_private_targets)
    except TargetRefused as exc:
        raise InvalidRequest(str(exc), param=param, code="invalid_url") from exc
    return url
