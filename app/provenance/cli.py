"""`kinema certs init` and `kinema verify FILE`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from app.config import get_settings
from app.db import session_scope
from app.provenance import service
from app.provenance.certs import create_dev_chain, signing_paths
from app.provenance.schemas import IngredientOut, VerifyOut

certs_cli = typer.Typer(help="The C2PA signing certificate.", no_args_is_help=True)


@certs_cli.command("init")
def init(
    force: Annotated[bool, typer.Option("--force", help="Replace an existing certificate and key.")] = False,
    organization: Annotated[str, typer.Option(help="The organisation named in the certificates.")] = (
        "Kinema development"
    ),
) -> None:
    """Create a development CA and a signing certificate it issued, where the settings point."""
    paths = signing_paths(get_settings())
    if paths.cert.exists() and paths.key.exists() and not force:
        typer.echo(f"signing certificate already at {paths.cert} (use --force to replace it)")
        return
    create_dev_chain(paths, organization=organization)
    typer.echo(
        f"signing chain: {paths.cert}\nprivate key:   {paths.key}\n"
        f"CA:            {paths.cert.parent / 'ca.pem'}"
    )


def verify(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The MP4 to check.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Check a video's C2PA manifest and invisible watermark; exit 0 if either proves its origin, else 1."""
    settings = get_settings()
    try:
        with session_scope() as session:
            report = service.verify_file(session, settings, file)
    except SQLAlchemyError:
        # No database here: still read the file, just without naming the job.
        report = service.verify_file(None, settings, file)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        typer.echo(_describe(report))
    if not (report.c2pa.valid or report.watermark.found):
        raise typer.Exit(1)


def _describe(report: VerifyOut) -> str:
    manifest, mark = report.c2pa, report.watermark
    if not manifest.present:
        lines = ["C2PA manifest: none"]
    else:
        verdict = "valid" if manifest.valid else "INVALID"
        lines = [
            f"C2PA manifest: {verdict} ({manifest.validation_state}), issued by {manifest.issuer}, "
            f"made with {manifest.claim_generator}",
            *(
                f"  action: {a.get('action')} {a.get('digitalSourceType', '')}".rstrip()
                for a in manifest.actions
            ),
            *(_ingredient_line(ingredient) for ingredient in manifest.ingredients),
            *(f"  note: {problem}" for problem in manifest.problems),
        ]
        if manifest.job_id:
            parent = f", from job {manifest.parent_job_id}" if manifest.parent_job_id else ""
            lines.append(f"  job: {manifest.job_id}, model {manifest.model}{parent}")
    if not mark.found:
        lines.append(f"watermark: not found ({mark.frames} frames read)")
    else:
        where = "this deployment" if mark.issued_here else "another issuer"
        lines.append(f"watermark: {mark.payload} (confidence {mark.confidence:.2f}, {where})")
        if mark.job_id:
            lines.append(f"  job: {mark.job_id}, key {mark.api_key_id}")
    return "\n".join(lines)


def _ingredient_line(ingredient: IngredientOut) -> str:
    if not ingredient.has_manifest:
        own = "no manifest of its own"
    else:
        verdict = "valid" if ingredient.valid else "INVALID"
        own = f"its manifest {verdict}, made with {ingredient.claim_generator}"
        if ingredient.job_id:
            own += f", job {ingredient.job_id}"
    return f"  ingredient ({ingredient.relationship}): {ingredient.title}, {own}"
