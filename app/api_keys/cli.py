"""`kinema keys ...`: create, list and revoke API keys from the command line."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.api_keys import service
from app.db import session_scope
from app.errors import NotFound

keys_cli = typer.Typer(
    help="Manage API keys (the key is printed once; only its hash is stored).", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)


@keys_cli.command("create")
def create(
    name: Annotated[str, typer.Option("--name", "-n", help="A label for the key, e.g. the team using it.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create a key and print it once."""
    with session_scope() as session:
        created = service.create_key(session, name)
    if as_json:
        typer.echo(json.dumps({"id": created.row.id, "name": created.row.name, "key": created.key}))
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
                        "created_at": r.created_at.isoformat(),
                        "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
                    }
                    for r in rows
                ]
            )
        )
        return
    table = Table("id", "name", "prefix", "created", "status")
    for r in rows:
        status = f"revoked {r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "active"
        table.add_row(r.id, r.name, f"kn_{r.prefix}", f"{r.created_at:%Y-%m-%d %H:%M}", status)
    console.print(table)


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
