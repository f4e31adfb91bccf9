"""`kinema webhooks ...`: the webhooks API (`/v1/webhooks`) from a shell."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from app.api_client import (
    DEFAULT_BASE_URL,
    ApiClient,
    ApiKeyOption,
    BaseUrlOption,
    JsonOption,
    err,
    print_json,
    reporting,
)

webhooks_cli = typer.Typer(
    help="Webhook endpoints, their signing secrets and delivery log.", no_args_is_help=True
)
out = Console()

EventsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--event",
        help="An event to send (repeat for several): video.completed, video.failed, video.canceled, "
        "video.in_progress. Default: the first three.",
    ),
]


def _endpoint_table(endpoints: list[dict[str, Any]]) -> Table:
    table = Table("id", "url", "events", "enabled", "secret", "created")
    for e in endpoints:
        enabled = "yes" if e["enabled"] else f"no ({e.get('disabled_reason') or 'disabled'})"
        table.add_row(
            e["id"], e["url"], " ".join(e["events"]), enabled, e["secret_hint"], e["created_at"][:19]
        )
    return table


def _print_endpoint(endpoint: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(endpoint)
        return
    out.print(_endpoint_table([endpoint]))
    if endpoint.get("secret"):
        typer.echo(f"signing secret: {endpoint['secret']}")
        err.print("[dim]Store the secret now: it is not shown again.[/dim]")


@webhooks_cli.command("list")
def list_endpoints(
    as_json: JsonOption = False, base_url: BaseUrlOption = DEFAULT_BASE_URL, api_key: ApiKeyOption = ""
) -> None:
    """Your webhook endpoints."""
    with reporting(), ApiClient(base_url, api_key) as client:
        endpoints = client.get("/v1/webhooks")["data"]
    if as_json:
        print_json(endpoints)
    else:
        out.print(_endpoint_table(endpoints) if endpoints else "no webhook endpoints")


@webhooks_cli.command("create")
def create(
    url: Annotated[str, typer.Argument(help="Where events are POSTed (http or https).")],
    event: EventsOption = None,
    as_json: JsonOption = False,
    base_url: BaseUrlOption = DEFAULT_BASE_URL,
    api_key: ApiKeyOption = "",
) -> None:
    """Register an endpoint; prints its `whsec_...` signing secret once."""
    body: dict[str, Any] = {"url": url}
    if event:
        body["events"] = event
    with reporting(), ApiClient(base_url, api_key) as client:
        endpoint = client.post("/v1/webhooks", expect=(201,), json=body)
    _print_endpoint(endpoint, as_json)


@webhooks_cli.command("show")
def show(
    endpoint_id: Annotated[str, typer.Argument(help="The endpoint's id.")],
    as_json: JsonOption = False,
    base_url: BaseUrlOption = DEFAULT_BASE_URL,
    api_key: ApiKeyOption = "",
) -> None:
    """One endpoint."""
    with reporting(), ApiClient(base_url, api_key) as client:
        endpoint = client.get(f"/v1/webhooks/{endpoint_id}")
    _print_endpoint(endpoint, as_json)


@webhooks_cli.command("update")
def update(
    endpoint_id: Annotated[str, typer.Argument(help="The endpoint's id.")],
    url: Annotated[str | None, typer.Option(help="A new URL.")] = None,
    event: EventsOption = None,
    enabled: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Turn deliveries on (e.g. after a 410) or off.")
    ] = None,
    as_json: JsonOption = False,
    base_url: BaseUrlOption = DEFAULT_BASE_URL,
    api_key: ApiKeyOption = "",
) -> None:
    """Change an endpoint's URL or events, or enable or disable it."""
    body: dict[str, Any] = {}
    if url is not None:
        body["url"] = url
    if event:
        body["events"] = event
    if enabled is not None:
        body["enabled"] = enabled
    with reporting(), ApiClient(base_url, api_key) as client:
        endpoint = client.request("PATCH", f"/v1/webhooks/{endpoint_id}", json=body)
    _print_endpoint(endpoint, as_json)


@webhooks_cli.command("delete")
def delete(
    endpoint_id: Annotated[str, typer.Argument(help="The endpoint's id.")],
    as_json: JsonOption = False,
    base_url: BaseUrlOption = DEFAULT_BASE_URL,
    api_key: ApiKeyOption = "",
) -> None:
    """Delete an endpoint: it gets no more events."""
    with reporting(), ApiClient(base_url, api_key) as client:
        deleted = client.request("DELETE", f"/v1/webhooks/{endpoint_id}")
    if as_json:
        print_json(deleted)
    else:
        typer.echo(f"deleted {deleted['id']}")


@webhooks_cli.command("rotate-secret")
def rotate_secret(
    endpoint_id: Annotated[str, typer.Argument(help="The endpoint's id.")],
    keep_old: Annotated[
        bool,
        typer.Option("--keep-old", help="Sign with the old secret too for 24 h, while receivers switch."),
    ] = False,
    as_json: JsonOption = False,
    base_url: BaseUrlOption = DEFAULT_BASE_URL,
    api_key: ApiKeyOption = "",
) -> None:
    """A new signing secret for an endpoint, printed once."""
    with reporting(), ApiClient(base_url, api_key) as client:
        endpoint = client.post(
            f"/v1/webhooks/{endpoint_id}/rotate_secret",
            json={"keep_old_secret_active_for_24_hours": keep_old},
        )
    _print_endpoint(endpoint, as_json)


@webhooks_cli.command("secret")
def default_secret(
    rotate: Annotated[bool, typer.Option("--rotate", help="Replace it with a new one.")] = False,
    as_json: JsonOption = False,
    base_url: BaseUrlOption = DEFAULT_BASE_URL,
    api_key: ApiKeyOption = "",
) -> None:
    """The secret that signs deliveries to a `webhook_url` given with a job."""
    with reporting(), ApiClient(base_url, api_key) as client:
        if rotate:
            answer = client.post("/v1/webhooks/default/rotate_secret")
        else:
            answer = client.get("/v1/webhooks/default/secret")
    if as_json:
        print_json(answer)
    else:
        typer.echo(answer["secret"])


@webhooks_cli.command("deliveries")
def deliveries(
    endpoint_id: Annotated[
        str, typer.Argument(help="The endpoint's id, or `default` for per-job `webhook_url`s.")
    ],
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many, newest first.")] = 20,
    as_json: JsonOption = False,
    base_url: BaseUrlOption = DEFAULT_BASE_URL,
    api_key: ApiKeyOption = "",
) -> None:
    """The delivery log: each event sent, its status and attempts."""
    with reporting(), ApiClient(base_url, api_key) as client:
        rows = client.get(f"/v1/webhooks/{endpoint_id}/deliveries", params={"limit": limit})["data"]
    if as_json:
        print_json(rows)
        return
    table = Table("id", "event", "job", "status", "attempts", "last answer", "created")
    for row in rows:
        last = row["attempts"][-1] if row["attempts"] else None
        answer = "" if last is None else str(last["status_code"] or last["error"] or "")
        table.add_row(
            row["id"], row["event_type"], row.get("job_id") or "", row["status"], str(row["attempt_count"]),
            answer, row["created_at"][:19],
        )  # fmt: skip
    out.print(table if rows else "no deliveries")


@webhooks_cli.command("redeliver")
def redeliver(
    endpoint_id: Annotated[str, typer.Argument(help="The endpoint's id, or `default`.")],
    delivery_id: Annotated[str, typer.Argument(help="The delivery's id.")],
    as_json: JsonOption = False,
    base_url: BaseUrlOption = DEFAULT_BASE_URL,
    api_key: ApiKeyOption = "",
) -> None:
    """Send a delivery again now (then on the retry schedule if it fails)."""
    with reporting(), ApiClient(base_url, api_key) as client:
        delivery = client.post(
            f"/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver", expect=(202,)
        )
    if as_json:
        print_json(delivery)
    else:
        typer.echo(f"{delivery['id']} queued for delivery ({delivery['event_type']})")
