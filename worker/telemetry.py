"""Celery signal handlers for logs and metrics; importing this module connects them.

- Logging: the worker logs through `app.logs` (JSON or console, KINEMA_LOG_FORMAT) instead of Celery's
  own set-up, and every line a task writes carries its job id (or delivery id) and task id.
- Metrics: after each generation the job's timings and the GPU's memory, after each webhook task its
  outcome; the main process serves them on KINEMA_WORKER_METRICS_PORT when that is set.
"""

from __future__ import annotations

import ast
import logging
import os
from typing import Any

import structlog
from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
)
from prometheus_client import start_http_server

from app.config import get_settings
from app.logs import configure_logging
from app.metrics.exposition import forget_process, multiprocess_dir, scrape_registry
from app.queue import GENERATE_TASK, WEBHOOK_DELIVER_TASK
from worker import metrics

log = logging.getLogger(__name__)

# Which id a task's first argument is, for the log context.
_ID_ARGUMENT = {GENERATE_TASK: "job_id", WEBHOOK_DELIVER_TASK: "delivery_id"}


class _ReceivedTaskIds(logging.Filter):
    """Celery logs "Task ... received" before the task runs (so before its ids are bound): take the
    job (or delivery) id and task id from the message itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        data = getattr(record, "data", None)
        if isinstance(data, dict) and data.get("name") in _ID_ARGUMENT:
            try:
                args = ast.literal_eval(str(data.get("args", "")))
            except (ValueError, SyntaxError):
                args = None
            if isinstance(args, list | tuple) and args:
                setattr(record, _ID_ARGUMENT[data["name"]], str(args[0]))
            record.task_id = data.get("id")
        return True


logging.getLogger("celery.worker.strategy").addFilter(_ReceivedTaskIds())


@setup_logging.connect
def _logging(loglevel: Any = None, **_: Any) -> None:
    # Connected, so Celery leaves the root logger to us; `--loglevel` wins over KINEMA_LOG_LEVEL.
    settings = get_settings()
    level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else (loglevel or settings.log_level)
    configure_logging(settings.log_format, str(level))


@task_prerun.connect
def _bind_task(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
    structlog.contextvars.clear_contextvars()
    context: dict[str, Any] = {"task_id": task_id}
    name = getattr(task, "name", None)
    if name in _ID_ARGUMENT and args:
        context[_ID_ARGUMENT[name]] = args[0]
    structlog.contextvars.bind_contextvars(**context)


@task_postrun.connect
def _after_task(
    task: Any = None, args: Any = None, retval: Any = None, state: str | None = None, **_: Any
) -> None:
    try:
        name = getattr(task, "name", None)
        if name == GENERATE_TASK and state == "SUCCESS" and retval == "claimed" and args:
            metrics.record_job(str(args[0]))
            metrics.sample_gpu_memory()
        elif name == WEBHOOK_DELIVER_TASK and state == "SUCCESS":
            metrics.record_webhook(retval)
    except Exception as exc:  # a metric is never worth failing a task over
        log.warning("recording metrics failed: %s", exc)
    finally:
        structlog.contextvars.clear_contextvars()


@worker_ready.connect
def _serve_metrics(**_: Any) -> None:
    # Once the pool has started, so its processes do not inherit the listening socket.
    port = get_settings().worker_metrics_port
    if not port:
        return
    if multiprocess_dir() is None:
        log.warning(
            "KINEMA_WORKER_METRICS_PORT is set without PROMETHEUS_MULTIPROC_DIR: metrics recorded by "
            "prefork pool processes are not served. Start workers with `kinema worker`, which sets it up."
        )
    start_http_server(port, registry=scrape_registry())
    log.info("worker metrics on :%d/metrics", port)


@worker_process_init.connect
def _process_started(**_: Any) -> None:
    # After the model preload (connected earlier): the memory the loaded weights hold.
    metrics.sample_gpu_memory()


@worker_process_shutdown.connect
def _process_stopped(**_: Any) -> None:
    forget_process(os.getpid())
