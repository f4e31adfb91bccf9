"""Per-process state of a worker: the loaded model (once per process) and the worker's name."""

from __future__ import annotations

import logging
import os
import socket

from app.config import get_settings
from model import generate
from model.pipeline import LoadedModel

log = logging.getLogger(__name__)


def worker_name() -> str:
    """`host:pid`, written on the job row so an operator can tell which process ran it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def get_model(model_id: str) -> LoadedModel:
    """The pipeline for `model_id`, loaded on first use and kept for the life of the process."""
    return generate.get_model(model_id, get_settings().effective_model_cache_dir)


def preload() -> None:
    """Load the deployment's model now; a failure is logged and retried by the first job."""
    try:
        get_model(get_settings().model_id)
    except Exception:
        log.exception("preloading the model failed")
