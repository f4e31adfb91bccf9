"""The CLI's connection to a Kinema API: options, requests, and failures as documented exit codes.

The commands that talk to a server (`kinema generate`, `kinema jobs ...`, `kinema webhooks ...`) use
this client; the key and URL come from `--api-key`/`--base-url` or `KINEMA_API_KEY`/`KINEMA_BASE_URL`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape

DEFAULT_BASE_URL = "http://127.0.0.1:8000"

err = Console(stderr=True)


class ExitCode(IntEnum):
    """What a remote command's exit status means (README: "Exit codes")."""

    OK = 0
    # The job failed or was canceled, or its state does not allow the request (409: not finished yet,
    # already finished); `kinema verify`: no proof of origin found.
    JOB_FAILED = 1
    # Bad options or arguments, or a request the API refused as invalid (400, 413, 422).
    USAGE = 2
    # No key, a wrong or revoked key (401), or a key without the scope the command needs (403).
    AUTH = 3
    # No such job, webhook endpoint or delivery (404).
    NOT_FOUND = 4
    # The API cannot be reached, had an error (5xx), or asks to retry later (429).
    UNAVAILABLE = 5


class CommandFailed(Exception):
    """A remote command cannot go on; `message` is for the user, `exit_code` for scripts."""

    def __init__(self, message: str, exit_code: ExitCode) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


BaseUrlOption = Annotated[str, typer.Option("--base-url", envvar="KINEMA_BASE_URL", help="The API's URL.")]
ApiKeyOption = Annotated[
    str,
    typer.Option("--api-key", envvar="KINEMA_API_KEY", help="Your API key.", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout, for scripts.")]


def exit_code_for(status: int) -> ExitCode:
    """The exit code for an HTTP error status."""
    if status in (401, 403):
        return ExitCode.AUTH
    if status == 404:
        return ExitCode.NOT_FOUND
    if status == 409:
        return ExitCode.JOB_FAILED
    if status == 429 or status >= 500:
        return ExitCode.UNAVAILABLE
    return ExitCode.USAGE


def describe_error(response: httpx.Response) -> str:
    """`STATUS code: message (param: ...)` from the API's error body, or the start of the body."""
    try:
        error: dict[str, Any] = response.json()["error"]
        param = f" (param: {error['param']})" if error.get("param") else ""
        return f"{response.status_code} {error.get('code')}: {error.get('message')}{param}"
    except Exception:
        return f"{response.status_code}: {response.text[:200]}"


class ApiClient:
    """An authenticated HTTP client for one Kinema API; every failure is a CommandFailed."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 30) -> None:
        if not api_key:
            raise CommandFailed("No API key: pass --api-key or set KINEMA_API_KEY.", ExitCode.AUTH)
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()

    def unreachable(self, exc: Exception) -> CommandFailed:
        return CommandFailed(f"Cannot reach {self.base_url}: {exc}", ExitCode.UNAVAILABLE)

    def request(self, method: str, path: str, *, expect: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        """The JSON answer of `method path`; any other status than `expect` is a CommandFailed."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from exc
        if response.status_code not in expect:
            raise CommandFailed(describe_error(response), exit_code_for(response.status_code))
        return response.json()

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, *, expect: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        return self.request("POST", path, expect=expect, **kwargs)

    @contextmanager
    def stream(self, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed GET answered 200 (redirects followed: httpx drops the key when one leaves the API)."""
        try:
            with self.http.stream("GET", path, follow_redirects=True, **kwargs) as response:
                if response.status_code != 200:
                    response.read()
                    raise CommandFailed(describe_error(response), exit_code_for(response.status_code))
                yield response
        except httpx.TransportError as exc:
            raise self.unreachable(exc) from exc


@contextmanager
def reporting() -> Iterator[None]:
    """Run a command body: a CommandFailed is printed on stderr and becomes its exit code."""
    try:
        yield
    except CommandFailed as exc:
        err.print(f"[red]{escape(exc.message)}[/red]")
        raise typer.Exit(int(exc.exit_code)) from exc


def print_json(value: Any) -> None:
    """`value` as indented JSON on stdout."""
    typer.echo(json.dumps(value, indent=2))
