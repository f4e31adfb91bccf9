"""Plain data passed across the model boundary: what to generate and how progress is reported."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Phase(StrEnum):
    """Where a generation is; the worker adds the phases that happen outside the model."""

    QUEUED = "queued"
    LOADING = "loading"
    DENOISING = "denoising"
    DECODING = "decoding"
    ENCODING = "encoding"
    UPLOADING = "uploading"


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One text-to-video generation, in the units the model works in (pixels and frames)."""

    prompt: str
    width: int
    height: int
    num_frames: int
    fps: int
    num_inference_steps: int
    guidance_scale: float
    seed: int
    negative_prompt: str = ""
    model_id: str = "builtin:tiny-wan"


@dataclass(frozen=True, slots=True)
class StepInfo:
    """A progress report from inside `generate`: `step` of `total_steps` in `phase`."""

    phase: Phase
    step: int
    total_steps: int


class ModelError(Exception):
    """A model could not be loaded or could not run a request."""


class GenerationCanceled(Exception):
    """Raised inside `generate` when `should_stop()` answered True; no frames follow."""
