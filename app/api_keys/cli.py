"""`kinema keys ...`: create, list and revoke API keys from the command line."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.api_keys import service
from app.api_keys.models import DEFAULT_SCOPES, ApiKey, Scope
from app.db import session_scope
from app.errors import NotFound

keys_cli = typer.Typer(
    help="Manage API keys (the key is printed once; only its hash is stored).", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)


_LIMIT_HELP = "Omitted: the deployment's default (KINEMA_DEFAULT_*); 0: unlimited."


@keys_cli.command("create")
def create(
    name: Annotated[str, typer.Option("--name", "-n", help="A label for the key, e.g. the team using it.")],
    scope: Annotated[
        list[Scope] | None,
        typer.Option(
            "--scope", help="A scope the key gets (repeat for several). Default: generate and read."
        ),
    ] = None,
    rpm: Annotated[
        int | None, typer.Option("--rpm", min=0, help=f"Requests per minute. {_LIMIT_HELP}")
    ] = None,
    max_concurrent: Annotated[
        int | None,
        typer.Option("--max-concurrent", min=0, help=f"Jobs queued or running at once. {_LIMIT_HELP}"),
    ] = None,
    monthly_quota_s: Annotated[
        int | None,
        typer.Option("--monthly-quota-s", min=0, help=f"Seconds of video per calendar month. {_LIMIT_HELP}"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create a key and print it once."""
    with session_scope() as session:
        created = service.create_key(
            session,
            name,
            scopes=scope or DEFAULT_SCOPES,
            rate_limit_rpm=rpm,
            max_concurrent_jobs=max_concurrent,
            monthly_quota_s=monthly_quota_s,
        )
    if as_json:
        row = created.row
        typer.echo(
            json.dumps(
                {
                    "id": row.id,
                    "name": row.name,
                    "key": created.key,
                    "scopes": row.scope_list,
                    **{field: getattr(row, field) for field in service.LIMIT_FIELDS},
                }
            )
        )
        return
    typer.echo(created.key)
    err_console.print(
        f"[dim]Created key {created.row.id} ({name}). Store it now: it is not shown again.[/dim]"
    )


@keys_cli.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List keys (prefixes only; keys themselves are never stored)."""
    with session_scope() as session:
        rows = service.list_keys(session)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "id": r.id,
                        "name": r.name,
                        "prefix": f"kn_{r.prefix}",
                        "scopes": r.scope_list,
                        **{field: getattr(r, field) for field in service.LIMIT_FIELDS},
                        "created_at": r.created_at.isoformat(),
                        "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
                    }
                    for r in rows
                ]
            )
        )
        return
    table = Table("id", "name", "prefix", "scopes", "rpm", "concurrent", "quota s", "created", "status")
    for r in rows:
        status = f"revoked {r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "active"
        limits = ["default" if v is None else "unlimited" if v == 0 else str(v) for v in _limits(r)]
        table.add_row(
            r.id,
            r.name,
            f"kn_{r.prefix}",
            " ".join(r.scope_list),
            *limits,
            f"{r.created_at:%Y-%m-%d %H:%M}",
            status,
        )
    console.print(table)


def _limits(row: ApiKey) -> list[int | None]:
    return [getattr(row, field) for field in service.LIMIT_FIELDS]


@keys_cli.command("revoke")
def revoke(key: Annotated[str, typer.Argument(help="The key's id or prefix (kn_XXXXXXXXXX).")]) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    with session_scope() as session:
        try:
            row = service.revoke_key(session, key)
        except NotFound as exc:
            err_console.print(f"[red]{exc.message}[/red]")
            raise typer.Exit(1) from exc
    typer.echo(f"revoked {row.id} (kn_{row.prefix})")
