"""Per-process state of a worker: the loaded models (once per process) and the worker's name."""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING

from app.config import Settings, get_settings
from app.model_options import ModelOptions
from app.served_models import served_options, served_paths
from model import generate
from model.config import InferenceOptions, ModelError
from model.pipeline import LoadedModel

if TYPE_CHECKING:
    from model.audio import LoadedAudioModel

log = logging.getLogger(__name__)


def worker_name() -> str:
    """`host:pid`, written on the job row so an operator can tell which process ran it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def inference_options(settings: Settings, model_id: str | None = None) -> InferenceOptions:
    """The speed switches the settings ask for (`KINEMA_DTYPE`, `KINEMA_COMPILE`, ...).

    With `model_id`, that model's KINEMA_MODELS options (`dtype`, `cpu_offload`, `enable_vae_tiling`)
    take the place of the deployment-wide settings.
    """
    options = served_options(model_id, settings) if model_id is not None else ModelOptions()
    return InferenceOptions(
        dtype=options.dtype or settings.dtype,
        attention_backend=settings.attention_backend or None,
        compile=settings.compile,
        cfg_batch=settings.cfg_batch,
        step_cache=None if settings.step_cache == "none" else settings.step_cache,
        step_cache_threshold=settings.step_cache_threshold,
        vae_tiling=settings.vae_tiling if options.enable_vae_tiling is None else options.enable_vae_tiling,
        cpu_offload=options.cpu_offload,
        video_encoder=settings.video_encoder,
    )


def get_model(model_id: str) -> LoadedModel:
    """The pipeline for `model_id` with the settings' speed switches, loaded once per process.

    A KINEMA_MODELS id loads from its directory, with its options; any other id names a built-in or a
    directory itself.
    """
    settings = get_settings()
    path = served_paths(settings).get(model_id)
    options = inference_options(settings, model_id)
    return generate.get_model(model_id, settings.effective_model_cache_dir, options, path)


def get_audio_model() -> LoadedAudioModel:
    """The soundtrack pipeline (KINEMA_AUDIO_MODEL), loaded once per process when a job first asks for
    audio. Raises `ModelError` when none is configured (the gateway refuses such requests already; a
    worker configured differently fails the job saying so)."""
    from model import audio  # its transformers and diffusers classes load with the first audio job

    settings = get_settings()
    if not settings.audio_model:
        raise ModelError("This job asks for audio, but this worker has no audio model (KINEMA_AUDIO_MODEL).")
    return audio.get_audio_model(settings.audio_model, settings.effective_model_cache_dir)


def served_model(settings: Settings) -> str:
    """The model this worker holds: `kinema worker --model` (KINEMA_WORKER_MODEL), else the default."""
    return settings.worker_model or settings.model_id


def preload() -> None:
    """Load this worker's model now; a failure is logged and retried by the first job."""
    try:
        get_model(served_model(get_settings()))
    except Exception:
        log.exception("preloading the model failed")
