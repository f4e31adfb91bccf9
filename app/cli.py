"""The `kinema` command: run the API, a worker, migrations, manage keys, and generate from a shell."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from app.api_keys.cli import keys_cli
from app.config import get_settings
from app.jobs.cli import generate, jobs_cli
from app.moderation.cli import moderation_cli
from app.provenance.certs import ensure_signing_chain
from app.provenance.cli import certs_cli, verify
from app.served_models import is_served, queue_for, served_paths
from app.webhooks.cli import webhooks_cli

cli = typer.Typer(
    help="Kinema: self-hosted video generation.", no_args_is_help=True, pretty_exceptions_enable=False
)
cli.add_typer(keys_cli, name="keys")
cli.add_typer(certs_cli, name="certs")
cli.add_typer(moderation_cli, name="moderation")
cli.add_typer(jobs_cli, name="jobs")
cli.add_typer(webhooks_cli, name="webhooks")
cli.command()(generate)
cli.command()(verify)


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
    log_level: Annotated[
        str | None, typer.Option(help="Log level (default: KINEMA_LOG_LEVEL, else info).")
    ] = None,
) -> None:
    """Run the API server (uvicorn); its logs go through the app's JSON (or console) handler."""
    import uvicorn

    if log_level:
        os.environ["KINEMA_LOG_LEVEL"] = log_level.upper()  # the app's processes read it
        get_settings.cache_clear()
    settings = get_settings()
    from app.logs import configure_logging

    configure_logging(settings.log_format, settings.log_level)  # this process's own lines (the supervisor's)
    _metrics_dir_for(f"api-{port}", processes=workers)
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        log_config=None,  # the app configures logging; uvicorn's loggers propagate to it
        access_log=False,  # the app's access line carries the request id, route and key
        h11_max_incomplete_event_size=settings.max_header_bytes,
    )


def _metrics_dir_for(name: str, *, processes: int) -> None:
    """Set up PROMETHEUS_MULTIPROC_DIR before the processes that count start (see docs/operations.md).

    A folder the operator named is emptied of old values; with several processes and none named, one
    under KINEMA_HOME is made. One process with none named counts in memory.
    """
    from app.metrics.exposition import multiprocess_dir, prepare_multiprocess_dir

    named = multiprocess_dir()
    if named is not None:
        prepare_multiprocess_dir(Path(named))
    elif processes > 1:
        prepare_multiprocess_dir(get_settings().home / "metrics" / name)


# What a worker can consume: generations (GPU) and webhook deliveries (network only).
WORKER_QUEUES = ("generate", "webhooks")


def worker_command(
    concurrency: int = 1,
    loglevel: str = "INFO",
    pool: str = "prefork",
    queues: tuple[str, ...] = WORKER_QUEUES,
    beat: bool = False,
    model: str | None = None,
) -> list[str]:
    """The Celery worker command line; one process per GPU is the production shape.

    `model`: the served model whose queue "generate" means (default: KINEMA_MODEL_ID's, KINEMA_QUEUE_NAME).
    """
    settings = get_settings()
    generate_queue = settings.queue_name if model is None else queue_for(model, settings)
    names = {"generate": generate_queue, "webhooks": settings.webhook_queue_name}
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
        bool,
        typer.Option("--beat", help="Also run Celery beat (the webhook and job sweepers): on one host only."),
    ] = False,
    model: Annotated[
        str | None,
        typer.Option(help="The served model to load and take jobs for (default: KINEMA_MODEL_ID)."),
    ] = None,
) -> None:
    """Run a Celery worker: GPU generations (the model loads once per process) and webhook deliveries."""
    chosen = _queues(queues)
    if model is not None:
        if not is_served(model, get_settings()):
            served = ", ".join(served_paths(get_settings()))
            raise typer.BadParameter(f"{model!r} is not served (KINEMA_MODEL_ID, KINEMA_MODELS): {served}")
        os.environ["KINEMA_WORKER_MODEL"] = model  # the pool processes load this model (worker/runtime.py)
    # A webhooks-only worker waits on the network: threads, and no model loaded.
    pool_name = pool or ("prefork" if "generate" in chosen else "threads")
    metrics_port = get_settings().worker_metrics_port
    if metrics_port:
        # Pool processes record, the main process serves: they share values through this folder.
        _metrics_dir_for(f"worker-{metrics_port}", processes=2)
    command = worker_command(concurrency, loglevel, pool_name, chosen, beat, model)
    os.execvp(command[0], command)


@cli.command()
def beat(loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO") -> None:
    """Run Celery beat alone: it schedules the webhook and job sweepers. Run exactly one per deployment."""
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
    os.environ.setdefault("KINEMA_INPUT_ALLOW_PRIVATE_URLS", "true")  # image_url/video_url on this machine
    os.environ.setdefault("KINEMA_LOG_FORMAT", "console")  # logs for a person at a terminal
    os.environ.setdefault("KINEMA_API_BASE_URL", base.replace("://0.0.0.0:", "://127.0.0.1:"))
    get_settings.cache_clear()
    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    migrate()
    ensure_signing_chain(settings)  # `kinema certs init` if there is no signing certificate yet
    key = _dev_key(settings.home)
    # One generation worker per served model, each loading its model and taking its queue.
    generation_workers = [
        subprocess.Popen(
            worker_command(loglevel="WARNING", queues=("generate",), model=model_id),
            env={**os.environ, "KINEMA_WORKER_MODEL": model_id},
            start_new_session=True,
        )
        for model_id in served_paths(settings)
    ]
    workers = [
        *generation_workers,
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
        "-H 'Content-Type: application/json' "
        '-d \'{"prompt": "a red ball moving to the right on a white background", "duration": 2}\'\n'
        f'  kinema generate "a red ball moving to the right on a white background" --duration 2 -o out.mp4 '
        f"--base-url {base}\n"
        f"Playground: {base}/playground\n"
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


def main() -> None:
    """Console-script entry point."""
    cli()
