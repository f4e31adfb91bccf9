"""The worker's Celery app: `celery -A worker.celery_app worker` (or `kinema worker`)."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_process_init, worker_ready

from app.config import get_settings
from app.queue import JOB_SWEEP_TASK, WEBHOOK_SWEEP_TASK, make_celery

_settings = get_settings()
celery_app = make_celery(_settings)
celery_app.conf.include = ["worker.tasks.generate", "worker.tasks.webhooks", "worker.tasks.sweeper"]
# Celery beat (`kinema beat`, or `kinema worker --beat` on one host): the webhook and job sweepers, both
# on the webhooks queue, so that a sweep never waits behind a generation.
celery_app.conf.beat_schedule = {
    "webhook-sweep": {
        "task": WEBHOOK_SWEEP_TASK,
        "schedule": _settings.webhook_sweep_interval_s,
        "options": {"queue": _settings.webhook_queue_name, "expires": _settings.webhook_sweep_interval_s},
    },
    "job-sweep": {
        "task": JOB_SWEEP_TASK,
        "schedule": _settings.job_sweep_interval_s,
        "options": {"queue": _settings.webhook_queue_name, "expires": _settings.job_sweep_interval_s},
    },
}
# Cold shutdown (SIGQUIT; SIGTERM too with REMAP_SIGTERM=SIGQUIT): the running job gets this long, then
# its task goes back to the queue unacknowledged and another worker takes the job over after its lease.
celery_app.conf.worker_soft_shutdown_timeout = _settings.worker_soft_shutdown_s
# A broker outage does not stop running jobs (Celery 6 would cancel them): their state is in Postgres, and
# the acknowledgement lost with the connection only means a redelivered task that finds the job done.
celery_app.conf.worker_cancel_long_running_tasks_on_connection_loss = False
celery_app.conf.beat_schedule_filename = str(_settings.home / "celerybeat-schedule")


@worker_process_init.connect
def _load_model(**_: Any) -> None:
    # Load the weights when the process starts, not when the first job is already waiting.
    from worker import runtime

    runtime.preload()


@worker_ready.connect
def _sweep_on_start(**_: Any) -> None:
    # Deliveries and jobs whose task was lost while no worker ran go out now, not at the next beat.
    for task in (WEBHOOK_SWEEP_TASK, JOB_SWEEP_TASK):
        try:
            celery_app.send_task(task, queue=_settings.webhook_queue_name)
        except Exception as exc:  # kombu raises transport-specific errors; beat sweeps again later
            logging.getLogger(__name__).warning("%s at start not sent: %s", task, exc)


# Logs (JSON, with the job id on every line) and metrics: signal handlers, connected on import and after
# `_load_model`, so the GPU memory sampled when a process starts includes the loaded weights.
import worker.telemetry  # noqa: E402, F401
