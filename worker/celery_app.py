"""The worker's Celery app: `celery -A worker.celery_app worker` (or `kinema worker`)."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init

from app.config import get_settings
from app.queue import make_celery

celery_app = make_celery(get_settings())
celery_app.conf.include = ["worker.tasks.generate"]


@worker_process_init.connect
def _load_model(**_: Any) -> None:
    # Load the weights when the process starts, not when the first job is already waiting.
    from worker import runtime

    runtime.preload()
