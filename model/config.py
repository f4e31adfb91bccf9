"""Plain data passed across the model boundary: what to generate and how progress is reported."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


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


DType = Literal["auto", "bf16", "fp16", "fp32"]
CompileMode = Literal["none", "regional"]
StepCache = Literal["first_block"]
VideoEncoder = Literal["libx264", "h264_nvenc", "auto"]

_DTYPES = ("auto", "bf16", "fp16", "fp32")
_COMPILE_MODES = ("none", "regional")
_STEP_CACHES = (None, "first_block")
_VIDEO_ENCODERS = ("libx264", "h264_nvenc", "auto")


@dataclass(frozen=True, slots=True)
class InferenceOptions:
    """How a worker runs its model: the speed switches. The defaults are plain diffusers, as before.

    - `dtype`: "auto" is bfloat16 on CUDA and float32 on the CPU; the Wan VAE always stays float32.
    - `attention_backend`: None for diffusers' default (torch SDPA), or a name `set_attention_backend`
      accepts ("flash", "_flash_3", "_native_cudnn", "sage", "_native_math", ...). One that cannot run on
      the device and dtype is refused with `ModelError` when the model loads, never silently replaced.
    - `compile`: "regional" compiles each repeated transformer block with `torch.compile`.
    - `cfg_batch`: both classifier-free-guidance branches in one batch of 2 (Wan; LTX and CogVideoX
      pipelines batch them already).
    - `step_cache`: "first_block" skips the remaining transformer blocks of a pass when the first block's
      residual changed by less than `step_cache_threshold` (relative mean) since the last full pass.
    - `vae_tiling`: decode in overlapping spatial tiles (less memory at 720p/1080p; whole clip at once).
    - `video_encoder`: "auto" uses NVENC when PyAV has it and it opens, else libx264.
    """

    dtype: DType = "auto"
    attention_backend: str | None = None
    compile: CompileMode = "none"
    cfg_batch: bool = False
    step_cache: StepCache | None = None
    step_cache_threshold: float = 0.05
    vae_tiling: bool = False
    video_encoder: VideoEncoder = "libx264"

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise ModelError(f"dtype must be one of {', '.join(_DTYPES)}; got {self.dtype!r}")
        if self.compile not in _COMPILE_MODES:
            raise ModelError(f"compile must be one of {', '.join(_COMPILE_MODES)}; got {self.compile!r}")
        if self.step_cache not in _STEP_CACHES:
            raise ModelError(f"step_cache must be None or 'first_block'; got {self.step_cache!r}")
        if not self.step_cache_threshold >= 0:
            raise ModelError(f"step_cache_threshold must be >= 0; got {self.step_cache_threshold!r}")
        if self.video_encoder not in _VIDEO_ENCODERS:
            raise ModelError(
                f"video_encoder must be one of {', '.join(_VIDEO_ENCODERS)}; got {self.video_encoder!r}"
            )


class GenerationCanceled(Exception):
    """Raised inside `generate` when `should_stop()` answered True; no frames follow."""
