"""The `kinema` command: run the API, a worker, migrations, manage keys, and generate from a shell."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from app.api_keys.cli import keys_cli
from app.config import get_settings
from app.moderation.cli import moderation_cli
from app.provenance.certs import ensure_signing_chain
from app.provenance.cli import certs_cli, verify

cli = typer.Typer(
    help="Kinema: self-hosted video generation.", no_args_is_help=True, pretty_exceptions_enable=False
)
cli.add_typer(keys_cli, name="keys")
cli.add_typer(certs_cli, name="certs")
cli.add_typer(moderation_cli, name="moderation")
cli.command()(verify)
err = Console(stderr=True)

# Exit codes `kinema generate` uses so scripts can tell failures apart.
EXIT_JOB_FAILED = 2
EXIT_API_ERROR = 3
EXIT_UNREACHABLE = 4


@cli.command()
def migrate() -> None:
    """Bring the database schema up to date (Alembic upgrade head)."""
    import migrations

    url = get_settings().effective_database_url
    migrations.upgrade(url)
    typer.echo(f"database at {_redact(url)} is up to date")


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="API processes.")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the API server (uvicorn)."""
    import uvicorn

    uvicorn.run(
        "app.main:create_app", factory=True, host=host, port=port, workers=workers, log_level=log_level
    )


# What a worker can consume: generations (GPU) and webhook deliveries (network only).
WORKER_QUEUES = ("generate", "webhooks")


def worker_command(
    concurrency: int = 1,
    loglevel: str = "INFO",
    pool: str = "prefork",
    queues: tuple[str, ...] = WORKER_QUEUES,
    beat: bool = False,
) -> list[str]:
    """The Celery worker command line; one process per GPU is the production shape."""
    settings = get_settings()
    names = {"generate": settings.queue_name, "webhooks": settings.webhook_queue_name}
    command = [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
        "--queues", ",".join(names[queue] for queue in queues),
        "--concurrency", str(concurrency),
        "--pool", pool,
        "--prefetch-multiplier", "1",
        "--loglevel", loglevel,
        "--hostname", f"kinema-{os.getpid()}@%h",
    ]  # fmt: skip
    if beat:
        settings.home.mkdir(parents=True, exist_ok=True)
        command += ["--beat", "--schedule", str(settings.home / "celerybeat-schedule")]
    return command


def _queues(value: str) -> tuple[str, ...]:
    queues = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    unknown = [queue for queue in queues if queue not in WORKER_QUEUES]
    if unknown or not queues:
        raise typer.BadParameter(f"use one or more of {', '.join(WORKER_QUEUES)} (comma-separated)")
    return queues


@cli.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Worker processes or threads (one process per GPU).")] = 1,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
    pool: Annotated[
        str | None,
        typer.Option(help="Celery pool: prefork, solo or threads. Default: prefork (webhooks: threads)."),
    ] = None,
    queues: Annotated[
        str, typer.Option(help="What to consume: generate, webhooks, or both (comma-separated).")
    ] = ",".join(WORKER_QUEUES),
    beat: Annotated[
        bool, typer.Option("--beat", help="Also run Celery beat (the webhook sweeper): on one host only.")
    ] = False,
) -> None:
    """Run a Celery worker: GPU generations (the model loads once per process) and webhook deliveries."""
    chosen = _queues(queues)
    # A webhooks-only worker waits on the network: threads, and no model loaded.
    pool_name = pool or ("prefork" if "generate" in chosen else "threads")
    command = worker_command(concurrency, loglevel, pool_name, chosen, beat)
    os.execvp(command[0], command)


@cli.command()
def beat(loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO") -> None:
    """Run Celery beat alone: it schedules the webhook sweeper. Run exactly one per deployment."""
    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "beat",
        "--schedule", str(settings.home / "celerybeat-schedule"),
        "--loglevel", loglevel,
    ]  # fmt: skip
    os.execvp(command[0], command)


def _dev_key(home: Path) -> str:
    """The development key kept in `home/dev-key`, created (or replaced, if revoked) as needed."""
    from app.api_keys import service
    from app.api_keys.models import Scope
    from app.db import session_scope
    from app.errors import AuthenticationFailed
    from app.security import authenticate

    path = home / "dev-key"
    with session_scope() as session:
        if path.is_file():
            key = path.read_text().strip()
            try:
                authenticate(session, key)
                return key
            except AuthenticationFailed:
                pass
        # The development key may also try the admin API.
        created = service.create_key(session, "development", scopes=list(Scope))
    path.write_text(created.key + "\n")
    path.chmod(0o600)
    return created.key


@cli.command()
def dev(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Run everything on embedded defaults: migrations, a development key, workers and the API."""
    base = f"http://{host}:{port}"
    # Development: webhooks may target this machine, and their links name this server.
    os.environ.setdefault("KINEMA_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")
    os.environ.setdefault("KINEMA_API_BASE_URL", base.replace("://0.0.0.0:", "://127.0.0.1:"))
    get_settings.cache_clear()
    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    migrate()
    ensure_signing_chain(settings)  # `kinema certs init` if there is no signing certificate yet
    key = _dev_key(settings.home)
    workers = [
        subprocess.Popen(worker_command(loglevel="WARNING", queues=("generate",)), start_new_session=True),
        # Webhook deliveries never wait behind a generation; beat runs the sweeper.
        subprocess.Popen(
            worker_command(4, "WARNING", "threads", queues=("webhooks",), beat=True), start_new_session=True
        ),
    ]
    typer.echo(
        "\nKinema is starting on embedded defaults "
        f"(database {_redact(settings.effective_database_url)}, storage {settings.effective_storage_dir}, "
        f"model {settings.model_id}).\n"
        f"Development key (also in {settings.home / 'dev-key'}):\n  export KINEMA_API_KEY={key}\n"
        "Try:\n"
        f'  curl -s -X POST {base}/generate -H "Authorization: Bearer $KINEMA_API_KEY" '
        '-H \'Content-Type: application/json\' -d \'{"prompt": "a red ball rolling across a wooden table", '
        '"duration": 2}\'\n'
        f'  kinema generate "a red ball rolling across a wooden table" --duration 2 -o out.mp4 '
        f"--base-url {base}\n"
        f"API docs: {base}/docs\n"
    )
    # uvicorn re-raises SIGTERM after its graceful shutdown; as an exit, so the workers below are stopped.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        serve(host=host, port=port, workers=1, log_level="info")
    finally:
        # The Celery main process only: it stops its own pool (a pool process signalled too gets respawned).
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in workers:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _redact(url: str) -> str:
    from sqlalchemy import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def _api_error(response: httpx.Response) -> str:
    try:
        error: dict[str, Any] = response.json()["error"]
        param = f" (param: {error['param']})" if error.get("param") else ""
        return f"{response.status_code} {error.get('code')}: {error.get('message')}{param}"
    except Exception:
        return f"{response.status_code}: {response.text[:200]}"


@cli.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What the video shows.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the MP4.")] = Path("out.mp4"),
    duration: Annotated[float, typer.Option(help="Seconds.")] = 4,
    resolution: Annotated[str | None, typer.Option(help="480p, 720p, 1080p or WxH.")] = None,
    aspect_ratio: Annotated[str | None, typer.Option(help="16:9, 9:16, 1:1, 4:3 or 3:4.")] = None,
    fps: Annotated[int | None, typer.Option(help="Frames per second.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising steps.")] = None,
    guidance_scale: Annotated[float | None, typer.Option(help="Guidance scale.")] = None,
    negative_prompt: Annotated[str | None, typer.Option(help="What to avoid.")] = None,
    base_url: Annotated[
        str, typer.Option(envvar="KINEMA_BASE_URL", help="The API's URL.")
    ] = "http://127.0.0.1:8000",
    api_key: Annotated[str, typer.Option(envvar="KINEMA_API_KEY", help="Your API key.")] = "",
    poll_interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 0.5,
) -> None:
    """Submit a job through the API, show its progress, and download the MP4."""
    if not api_key:
        err.print("[red]No API key: pass --api-key or set KINEMA_API_KEY.[/red]")
        raise typer.Exit(EXIT_API_ERROR)
    body: dict[str, Any] = {"prompt": prompt, "duration": duration}
    optional = {
        "resolution": resolution, "aspect_ratio": aspect_ratio, "fps": fps, "seed": seed,
        "num_inference_steps": steps, "guidance_scale": guidance_scale, "negative_prompt": negative_prompt,
    }  # fmt: skip
    body.update({name: value for name, value in optional.items() if value is not None})
    headers = {"Authorization": f"Bearer {api_key}"}
    try:
        with httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=30) as client:
            response = client.post("/generate", json=body)
            if response.status_code != 202:
                err.print(f"[red]Submit refused: {_api_error(response)}[/red]")
                raise typer.Exit(EXIT_API_ERROR)
            job = response.json()
            err.print(f"job {job['id']} queued")
            job = _follow(client, job, poll_interval)
            if job["status"] != "succeeded":
                error = job.get("error") or {}
                err.print(
                    f"[red]Job {job['id']} {job['status']}: {error.get('code')}: {error.get('message')}[/red]"
                )
                raise typer.Exit(EXIT_JOB_FAILED)
            _download(client, f"/jobs/{job['id']}/video", output)
    except httpx.TransportError as exc:
        err.print(f"[red]Cannot reach {base_url}: {exc}[/red]")
        raise typer.Exit(EXIT_UNREACHABLE) from exc
    out = job["output"]
    typer.echo(
        f"{output} ({out['width']}x{out['height']}, {out['frames']} frames at {out['fps']} fps, "
        f"{out['bytes']} bytes)"
    )


def _follow(client: httpx.Client, job: dict[str, Any], poll_interval: float) -> dict[str, Any]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task("queued", total=100)
        while job["status"] in ("queued", "in_progress"):
            time.sleep(poll_interval)
            response = client.get(f"/jobs/{job['id']}")
            if response.status_code != 200:
                err.print(f"[red]Polling failed: {_api_error(response)}[/red]")
                raise typer.Exit(EXIT_API_ERROR)
            job = response.json()
            label = job["phase"]
            if job["status"] == "queued" and job.get("queue_position") is not None:
                label = f"queued ({job['queue_position']} ahead)"
            elif job["total_steps"]:
                label = f"{job['phase']} {job['step']}/{job['total_steps']}"
            bar.update(task, completed=job["progress"], description=label)
        bar.update(
            task,
            completed=100 if job["status"] == "succeeded" else job["progress"],
            description=job["status"],
        )
    return job


def _download(client: httpx.Client, path: str, output: Path) -> None:
    # httpx drops the Authorization header when a redirect leaves the API's origin (presigned S3 URL).
    with client.stream("GET", path, follow_redirects=True) as response:
        if response.status_code != 200:
            response.read()
            err.print(f"[red]Download failed: {_api_error(response)}[/red]")
            raise typer.Exit(EXIT_API_ERROR)
        tmp = output.with_name(f".{output.name}.part")
        with tmp.open("wb") as out:
            for chunk in response.iter_bytes(1024 * 1024):
                out.write(chunk)
        tmp.replace(output)


def main() -> None:
    """Console-script entry point."""
    cli()
