"""The worker's Celery app: `celery -A worker.celery_app worker` (or `kinema worker`)."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_process_init, worker_ready

from app.config import get_settings
from app.queue import WEBHOOK_SWEEP_TASK, make_celery

_settings = get_settings()
celery_app = make_celery(_settings)
celery_app.conf.include = ["worker.tasks.generate", "worker.tasks.webhooks"]
# Celery beat (`kinema beat`, or `kinema worker --beat` on one host): the webhook sweeper.
celery_app.conf.beat_schedule = {
    "webhook-sweep": {
        "task": WEBHOOK_SWEEP_TASK,
        "schedule": _settings.webhook_sweep_interval_s,
        "options": {"queue": _settings.webhook_queue_name, "expires": _settings.webhook_sweep_interval_s},
    }
}
celery_app.conf.beat_schedule_filename = str(_settings.home / "celerybeat-schedule")


@worker_process_init.connect
def _load_model(**_: Any) -> None:
    # Load the weights when the process starts, not when the first job is already waiting.
    from worker import runtime

    runtime.preload()


@worker_ready.connect
def _sweep_on_start(**_: Any) -> None:
    # Deliveries whose task was lost while no worker ran go out now, not at the next beat.
    try:
        celery_app.send_task(WEBHOOK_SWEEP_TASK, queue=_settings.webhook_queue_name)
    except Exception as exc:  # kombu raises transport-specific errors; beat sweeps again later
        logging.getLogger(__name__).warning("webhook sweep at start not sent: %s", exc)
