"""`kinema moderation check`: try a policy file on prompts before deploying it."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from app.config import get_settings
from app.moderation.policy import PolicyError, load_policy
from app.moderation.service import check_text

moderation_cli = typer.Typer(help="Content filters: check a policy file and prompts.", no_args_is_help=True)


@moderation_cli.command("check")
def check(
    prompts: Annotated[list[str], typer.Argument(help="Prompts to check.")],
    policy: Annotated[
        str | None,
        typer.Option(help="A policy file (default: KINEMA_MODERATION_POLICY, else the shipped one)."),
    ] = None,
    key: Annotated[
        str | None, typer.Option(help="Apply this key's overrides (its id or kn_ prefix).")
    ] = None,
    negative: Annotated[bool, typer.Option("--negative", help="Check as negative prompts.")] = False,
) -> None:
    """Compile the policy (exit 2 naming a bad entry); print what each prompt falls in (exit 1: blocked)."""
    try:
        compiled = load_policy(policy or get_settings().moderation_policy or None)
    except (PolicyError, OSError) as exc:
        typer.echo(f"policy error: {exc}", err=True)
        raise typer.Exit(2) from exc
    override = compiled.override_for(key, key) if key else None
    any_blocked = False
    for prompt in prompts:
        found = check_text(
            compiled, prompt, param="negative_prompt" if negative else "prompt", override=override
        )
        any_blocked |= "block" in found.values()
        typer.echo(json.dumps({"prompt": prompt, "categories": {name: str(a) for name, a in found.items()}}))
    raise typer.Exit(1 if any_blocked else 0)
