"""Plain data passed across the model boundary: what to generate and how progress is reported."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np  # only for hints: the gateway imports this module and needs no numpy


class Phase(StrEnum):
    """Where a generation is; the worker adds the phases that happen outside the model."""

    QUEUED = "queued"
    LOADING = "loading"
    AUDIO = "audio"  # the soundtrack (`model.audio`), made before the video when a job asks for one
    DENOISING = "denoising"
    DECODING = "decoding"
    ENCODING = "encoding"
    UPLOADING = "uploading"


# How much of a source video an edit re-noises when the request does not say.
DEFAULT_STRENGTH = 0.6


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One generation, in the units the model works in (pixels and frames).

    Text to video by default; at most one of the conditioning inputs (uint8 RGB frames, any size: they
    are fitted to the output size with `model.conditioning.fit_frame`) makes it another mode:
    - `image` (H, W, 3): image to video; the first frame is this image.
    - `context` (T, H, W, 3): extension; the new frames continue these (only the last
      `model.conditioning.CONTEXT_FRAMES` are used) and `num_frames` counts the new frames only.
    - `source` (T, H, W, 3): video to video; the source (padded with its last frame or cut to
      `num_frames`) re-noised by `strength` (0 < s <= 1; 1 ignores it) and denoised with the prompt.
      A `numpy.memmap` works, so a long source need not be in memory.
    """

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
    # Arrays are left out of == and hash (numpy has no single truth value for them) and of repr.
    image: np.ndarray | None = field(default=None, compare=False, repr=False)
    context: np.ndarray | None = field(default=None, compare=False, repr=False)
    source: np.ndarray | None = field(default=None, compare=False, repr=False)
    strength: float = DEFAULT_STRENGTH

    @property
    def mode(self) -> str:
        """ "text", "image", "extend" or "edit" (the names `model.registry` uses), from the inputs given."""
        if self.image is not None:
            return "image"
        if self.context is not None:
            return "extend"
        if self.source is not None:
            return "edit"
        return "text"


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
    - `cpu_offload`: diffusers' model CPU offload: the weights stay in CPU memory and each component moves
      to the GPU while it runs (a model larger than the GPU's memory runs, slower). No effect on the CPU.
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
    cpu_offload: bool = False

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
