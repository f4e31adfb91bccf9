"""Which models Kinema can serve and the rules each imposes on a request.

Pure data: no torch. The gateway validates requests with these specs before anything is queued,
and the worker loads the pipeline the spec names (`model.pipeline`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

BUILTIN_TINY_WAN = "builtin:tiny-wan"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model's capabilities: the limits and defaults a request is checked against."""

    id: str
    family: str
    pipeline_class: str
    description: str
    # Frame counts must be `frame_step * k + 1` (Wan and LTX: temporal VAE compression 4 or 8).
    frame_step: int
    # The latent grid: generation sizes are rounded up to this and cropped back to the request.
    spatial_multiple: int
    default_fps: int
    default_steps: int
    default_guidance: float
    default_width: int
    default_height: int
    max_frames_per_pass: int
    max_width: int = 1920
    max_height: int = 1920
    path: str | None = None

    def num_frames_for(self, duration_s: float, fps: int) -> int:
        """The smallest valid frame count that covers `duration_s` at `fps`."""
        wanted = max(1, math.ceil(duration_s * fps))
        k = math.ceil((wanted - 1) / self.frame_step)
        return self.frame_step * k + 1

    def max_duration_s(self, fps: int) -> float:
        """The longest clip one pass of this model makes at `fps`."""
        return (self.max_frames_per_pass - 1) / fps

    def generation_size(self, width: int, height: int) -> tuple[int, int]:
        """The size the pipeline runs at: the request rounded up to the latent grid."""
        m = self.spatial_multiple
        return (math.ceil(width / m) * m, math.ceil(height / m) * m)


_FAMILY_BY_PIPELINE: dict[str, dict[str, object]] = {
    "WanPipeline": {
        "family": "wan",
        "frame_step": 4,
        "spatial_multiple": 16,
        "default_fps": 16,
        "default_steps": 50,
        "default_guidance": 5.0,
        "default_width": 832,
        "default_height": 480,
        "max_frames_per_pass": 81,
    },
    "LTXPipeline": {
        "family": "ltx",
        "frame_step": 8,
        "spatial_multiple": 32,
        "default_fps": 24,
        "default_steps": 50,
        "default_guidance": 3.0,
        "default_width": 704,
        "default_height": 480,
        "max_frames_per_pass": 257,
    },
    "CogVideoXPipeline": {
        "family": "cogvideox",
        "frame_step": 4,
        "spatial_multiple": 16,
        "default_fps": 8,
        "default_steps": 50,
        "default_guidance": 6.0,
        "default_width": 720,
        "default_height": 480,
        "max_frames_per_pass": 49,
    },
}

TINY_WAN = ModelSpec(
    id=BUILTIN_TINY_WAN,
    family="wan",
    pipeline_class="WanPipeline",
    description="A small random-weight Wan-architecture pipeline built on first use (for tests and try-outs: "
    "its video is noise).",
    frame_step=4,
    spatial_multiple=16,
    default_fps=8,
    default_steps=10,
    default_guidance=5.0,
    default_width=256,
    default_height=256,
    max_frames_per_pass=161,
)

_BUILTINS = {TINY_WAN.id: TINY_WAN}


class UnknownModelError(LookupError):
    """The model id is neither a built-in nor a local diffusers pipeline directory."""


def get_spec(model_id: str) -> ModelSpec:
    """Return the spec for a built-in id or a local diffusers pipeline directory."""
    if model_id in _BUILTINS:
        return _BUILTINS[model_id]
    path = Path(model_id).expanduser()
    index = path / "model_index.json"
    if not index.is_file():
        raise UnknownModelError(f"{model_id!r} is not a built-in model or a diffusers pipeline directory")
    pipeline_class = str(json.loads(index.read_text()).get("_class_name", ""))
    family = _FAMILY_BY_PIPELINE.get(pipeline_class)
    if family is None:
        supported = ", ".join(sorted(_FAMILY_BY_PIPELINE))
        raise UnknownModelError(f"{model_id!r} is a {pipeline_class}; supported pipelines: {supported}")
    return ModelSpec(
        id=model_id,
        pipeline_class=pipeline_class,
        description=f"{pipeline_class} from {path}",
        path=str(path.resolve()),
        **family,  # type: ignore[arg-type]
    )
