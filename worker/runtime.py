"""Per-process state of a worker: the loaded model (once per process) and the worker's name."""

from __future__ import annotations

import logging
import os
import socket

from app.config import Settings, get_settings
from app.served_models import served_paths
from model import generate
from model.config import InferenceOptions
from model.pipeline import LoadedModel

log = logging.getLogger(__name__)


def worker_name() -> str:
    """`host:pid`, written on the job row so an operator can tell which process ran it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def inference_options(settings: Settings) -> InferenceOptions:
    """The speed switches the settings ask for (`KINEMA_DTYPE`, `KINEMA_COMPILE`, ...)."""
    return InferenceOptions(
        dtype=settings.dtype,
        attention_backend=settings.attention_backend or None,
        compile=settings.compile,
        cfg_batch=settings.cfg_batch,
        step_cache=None if settings.step_cache == "none" else settings.step_cache,
        step_cache_threshold=settings.step_cache_threshold,
        vae_tiling=settings.vae_tiling,
        video_encoder=settings.video_encoder,
    )


def get_model(model_id: str) -> LoadedModel:
    """The pipeline for `model_id` with the settings' speed switches, loaded once per process.

    A KINEMA_MODELS id loads from its directory; any other id names a built-in or a directory itself.
    """
    settings = get_settings()
    path = served_paths(settings).get(model_id)
    return generate.get_model(model_id, settings.effective_model_cache_dir, inference_options(settings), path)


def served_model(settings: Settings) -> str:
    """The model this worker holds: `kinema worker --model` (KINEMA_WORKER_MODEL), else the default."""
    return settings.worker_model or settings.model_id


def preload() -> None:
    """Load this worker's model now; a failure is logged and retried by the first job."""
    try:
        get_model(served_model(get_settings()))
    except Exception:
        log.exception("preloading the model failed")
