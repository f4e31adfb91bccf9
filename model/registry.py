"""Which models Kinema can serve and the rules each imposes on a request.

Pure data: no torch. The gateway validates requests with these specs before anything is queued,
and the worker loads the pipeline the spec names (`model.pipeline`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

BUILTIN_TINY_WAN = "builtin:tiny-wan"
BUILTIN_KINEMA_SHAPES = "builtin:kinema-shapes"
# The shipped model's sampling defaults (chosen with bench/adherence.py; see bench/README.md).
KINEMA_SHAPES_STEPS = 20
KINEMA_SHAPES_GUIDANCE = 5.0
# The longest video a request may ask for, made as chained segments where one pass is shorter.
MAX_TOTAL_S = 60

# Generation modes: text to video, image to video (first frame given), extension of a video's last frames
# (also how long videos are chained), and video to video (edit and remix).
TEXT, IMAGE, EXTEND, EDIT = "text", "image", "extend", "edit"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model's capabilities: the limits and defaults a request is checked against."""

    id: str
    family: str
    pipeline_class: str
    description: str
    # Frame counts must be `frame_step * k + 1` (Wan 4, LTX 8: the VAE's temporal compression; CogVideoX 8).
    frame_step: int
    # The latent grid: generation sizes are rounded up to this and cropped back to the request.
    spatial_multiple: int
    default_fps: int
    default_steps: int
    default_guidance: float
    default_width: int
    default_height: int
    max_frames_per_pass: int
    # The most frames one request may ask for: more than one pass are chained (see `model.segments`).
    max_frames_total: int
    # Which of TEXT, IMAGE, EXTEND, EDIT the pipeline can run.
    modes: tuple[str, ...]
    max_width: int = 1920
    max_height: int = 1920
    path: str | None = None
    # The one size the pipeline runs at, when it has no other (learned positional embeddings): requests
    # up to it are center-cropped from it.
    fixed_size: tuple[int, int] | None = None

    def num_frames_for(self, duration_s: float, fps: int) -> int:
        """The smallest valid frame count that covers `duration_s` at `fps`."""
        wanted = max(1, math.ceil(duration_s * fps))
        k = math.ceil((wanted - 1) / self.frame_step)
        return self.frame_step * k + 1

    def max_duration_s(self, fps: int) -> float:
        """The longest clip one pass of this model makes at `fps`."""
        return (self.max_frames_per_pass - 1) / fps

    def max_total_duration_s(self, fps: int) -> float:
        """The longest video one request may ask for at `fps` (chained segments beyond one pass)."""
        return (self.max_frames_total - 1) / fps

    def generation_size(self, width: int, height: int) -> tuple[int, int]:
        """The size the pipeline runs at: the request rounded up to the latent grid (or the fixed size)."""
        if self.fixed_size is not None:
            return self.fixed_size
        m = self.spatial_multiple
        return (math.ceil(width / m) * m, math.ceil(height / m) * m)


def _frames_for_total(frame_step: int, fps: int) -> int:
    """MAX_TOTAL_S at `fps` as a valid frame count (`frame_step * k + 1`, rounded up)."""
    return frame_step * math.ceil((MAX_TOTAL_S * fps - 1) / frame_step) + 1


_WAN: dict[str, object] = {
    "family": "wan",
    "frame_step": 4,
    "spatial_multiple": 16,
    "default_fps": 16,
    "default_steps": 50,
    "default_guidance": 5.0,
    "default_width": 832,
    "default_height": 480,
    "max_frames_per_pass": 81,
    "max_frames_total": _frames_for_total(4, 16),
}
_LTX: dict[str, object] = {
    "family": "ltx",
    "frame_step": 8,
    "spatial_multiple": 32,
    "default_fps": 24,
    "default_steps": 50,
    "default_guidance": 3.0,
    "default_width": 704,
    "default_height": 480,
    "max_frames_per_pass": 257,
    "max_frames_total": _frames_for_total(8, 24),
}
_COGVIDEOX: dict[str, object] = {
    "family": "cogvideox",
    # The VAE compresses time 4x, but decodes an even number of latent frames to 4n frames, not 4(n-1)+1:
    # only an odd latent count gives the frames asked for, so 8k+1 (49 frames: 13 latent frames).
    "frame_step": 8,
    "spatial_multiple": 16,
    "default_fps": 8,
    "default_steps": 50,
    "default_guidance": 6.0,
    "default_width": 720,
    "default_height": 480,
    "max_frames_per_pass": 49,
    "max_frames_total": _frames_for_total(4, 8),
}

_HUNYUAN: dict[str, object] = {
    "family": "hunyuanvideo",
    "frame_step": 4,  # the causal VAE compresses time 4x: 4k+1 frames
    "spatial_multiple": 16,  # VAE 8x, patch 2
    "default_fps": 15,
    "default_steps": 50,
    "default_guidance": 6.0,  # embedded (distilled) guidance; a negative prompt needs true CFG, not used
    "default_width": 1280,
    "default_height": 720,
    "max_frames_per_pass": 129,
    "max_frames_total": 129,
}
_MOCHI: dict[str, object] = {
    "family": "mochi",
    "frame_step": 6,  # the VAE compresses time 6x: 6k+1 frames
    "spatial_multiple": 16,  # VAE 8x, patch 2
    "default_fps": 30,
    "default_steps": 64,
    "default_guidance": 4.5,
    "default_width": 848,
    "default_height": 480,
    "max_frames_per_pass": 163,
    "max_frames_total": 163,
}
_MODELSCOPE: dict[str, object] = {
    "family": "modelscope",
    "frame_step": 1,  # a 3D UNet on per-frame latents: any frame count
    "spatial_multiple": 8,  # VAE 8x
    "default_fps": 8,
    "default_steps": 50,
    "default_guidance": 9.0,
    "default_width": 256,
    "default_height": 256,
    "max_frames_per_pass": 64,
    "max_frames_total": 64,
    "max_width": 1024,
    "max_height": 1024,
}

# Text-to-video Wan runs every mode through latent conditioning (`model.segments`). The LTX and CogVideoX
# text-to-video pipelines take no frames, so they make one pass of text to video only. The image-to-video
# pipelines take a first frame: they animate images, and extend (and chain) from a video's last frame.
# VACE takes known frames and a mask, LTX condition takes frames at an index: both animate an image and
# extend (and chain) from a video's last frames. CogVideoX video to video re-noises a source: edits only,
# one pass (a pass cannot continue the one before, so longer edits would jump at every join).
_FAMILY_BY_PIPELINE: dict[str, dict[str, object]] = {
    "WanPipeline": {**_WAN, "modes": (TEXT, IMAGE, EXTEND, EDIT)},
    "WanImageToVideoPipeline": {**_WAN, "modes": (IMAGE, EXTEND)},
    "LTXPipeline": {**_LTX, "modes": (TEXT,), "max_frames_total": 257},
    "LTXImageToVideoPipeline": {**_LTX, "modes": (IMAGE, EXTEND)},
    "CogVideoXPipeline": {**_COGVIDEOX, "modes": (TEXT,), "max_frames_total": 49},
    "CogVideoXImageToVideoPipeline": {**_COGVIDEOX, "modes": (IMAGE, EXTEND)},
    "CogVideoXVideoToVideoPipeline": {**_COGVIDEOX, "modes": (EDIT,), "max_frames_total": 49},
    # No edit for VACE: its `video` with an all-ones mask is a control signal (depth, pose ...), not a
    # source re-noised by a strength, so an edit would be a new video only loosely shaped by the source.
    "WanVACEPipeline": {**_WAN, "family": "wan-vace", "modes": (TEXT, IMAGE, EXTEND)},
    "LTXConditionPipeline": {**_LTX, "family": "ltx-condition", "modes": (TEXT, IMAGE, EXTEND)},
    # One pass of text to video each: no image, extension or edit input in these pipelines.
    "HunyuanVideoPipeline": {**_HUNYUAN, "modes": (TEXT,)},
    "MochiPipeline": {**_MOCHI, "modes": (TEXT,)},
    "TextToVideoSDPipeline": {**_MODELSCOPE, "modes": (TEXT,)},
}

# Pipelines whose frame step and size grid are read from their VAE and transformer configs.
_WAN_PIPELINES = frozenset({"WanPipeline", "WanImageToVideoPipeline", "WanVACEPipeline"})

# Pipelines that take the first frame as an `image` argument.
IMAGE_TO_VIDEO_PIPELINES = frozenset(
    {"WanImageToVideoPipeline", "LTXImageToVideoPipeline", "CogVideoXImageToVideoPipeline"}
)
# Pipelines that take known frames as a `video` with a `mask` (0: keep, 1: generate): Wan VACE.
MASKED_VIDEO_PIPELINES = frozenset({"WanVACEPipeline"})
# Pipelines that take `conditions`: images or videos placed at a frame index (LTX-Video 0.9.5+).
FRAME_CONDITION_PIPELINES = frozenset({"LTXConditionPipeline"})
# Pipelines that take a source `video` and re-noise it by a `strength`.
VIDEO_TO_VIDEO_PIPELINES = frozenset({"CogVideoXVideoToVideoPipeline"})

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
    max_frames_total=_frames_for_total(4, 8),
    modes=(TEXT, IMAGE, EXTEND, EDIT),
)

# Kinema's own small model, trained on procedural shape clips (`model.training`) and shipped in the
# package: 64x64 at 8 fps, one 17-frame pass at a time (what it was trained on), longer videos chained.
KINEMA_SHAPES_PATH = Path(__file__).resolve().parent / "checkpoints" / "kinema-shapes"
KINEMA_SHAPES = ModelSpec(
    id=BUILTIN_KINEMA_SHAPES,
    family="wan",
    pipeline_class="WanPipeline",
    description="Kinema's small trained Wan-format model (64x64, 8 fps): coloured shapes moving on plain "
    "backgrounds, as the prompt says. Trained here from scratch; runs in seconds on a CPU.",
    frame_step=4,
    spatial_multiple=16,
    default_fps=8,
    default_steps=KINEMA_SHAPES_STEPS,
    default_guidance=KINEMA_SHAPES_GUIDANCE,
    default_width=64,
    default_height=64,
    max_frames_per_pass=17,
    max_frames_total=_frames_for_total(4, 8),
    modes=(TEXT, IMAGE, EXTEND, EDIT),
    max_width=128,
    max_height=128,
    path=str(KINEMA_SHAPES_PATH),
)

_BUILTINS = {TINY_WAN.id: TINY_WAN, KINEMA_SHAPES.id: KINEMA_SHAPES}


class UnknownModelError(LookupError):
    """The model id is neither a built-in nor a local diffusers pipeline directory."""


def get_spec(model_id: str, path: str | None = None) -> ModelSpec:
    """Return the spec for a built-in id or a local diffusers pipeline directory.

    With `path`, `model_id` is the name a deployment serves the pipeline directory at `path` under
    (`KINEMA_MODELS`); without it, the id is the built-in name or the directory itself.
    """
    if path is None and model_id in _BUILTINS:
        return _BUILTINS[model_id]
    if path is not None and path in _BUILTINS:
        return replace(_BUILTINS[path], id=model_id)
    path = str(Path(path or model_id).expanduser())
    return _directory_spec(model_id, Path(path))


def _directory_spec(model_id: str, path: Path) -> ModelSpec:
    """The spec of the diffusers pipeline saved at `path`, from its `model_index.json` class name."""
    index = path / "model_index.json"
    if not index.is_file():
        raise UnknownModelError(f"{model_id!r} is not a built-in model or a diffusers pipeline directory")
    pipeline_class = str(json.loads(index.read_text()).get("_class_name", ""))
    family = _FAMILY_BY_PIPELINE.get(pipeline_class)
    if family is None:
        supported = ", ".join(sorted(_FAMILY_BY_PIPELINE))
        raise UnknownModelError(f"{model_id!r} is a {pipeline_class}; supported pipelines: {supported}")
    spec = ModelSpec(
        id=model_id,
        pipeline_class=pipeline_class,
        description=f"{pipeline_class} from {path}",
        path=str(path.resolve()),
        **family,  # type: ignore[arg-type]
    )
    if pipeline_class in _WAN_PIPELINES:
        spec = _with_wan_grid(spec, path)
    return _with_fixed_size(spec, path)


def _read_config(path: Path) -> dict[str, Any]:
    """A component's `config.json` as a dict; empty when the directory has none."""
    return json.loads(path.read_text()) if path.is_file() else {}


def _with_wan_grid(spec: ModelSpec, path: Path) -> ModelSpec:
    """The frame step and size grid a Wan pipeline derives from its VAE's and transformer's configs.

    Wan 2.2 TI2V-5B is a `WanPipeline` whose VAE compresses space 16x (a 32 px grid with patch 2), where
    Wan 2.1's and 2.2 A14B's compress 8x (16 px): each is read as the pipeline reads it, with
    `AutoencoderKLWan`'s defaults (4x time, 8x space) for a config that does not say.
    """
    vae = _read_config(path / "vae" / "config.json")
    transformer = _read_config(path / "transformer" / "config.json") or _read_config(
        path / "transformer_2" / "config.json"  # a Wan 2.2 A14B directory may hold one expert only
    )
    if spec.pipeline_class == "WanVACEPipeline":
        # VACE counts the VAE's downsampling stages instead of reading its scale factors.
        stages = vae.get("temperal_downsample") or [False, True, True]
        temporal, spatial = 2 ** sum(bool(stage) for stage in stages), 2 ** len(stages)
    else:
        temporal = int(vae.get("scale_factor_temporal") or 4)
        spatial = int(vae.get("scale_factor_spatial") or 8)
    _, patch_h, patch_w = (int(size) for size in transformer.get("patch_size") or (1, 2, 2))
    changes: dict[str, int] = {"spatial_multiple": math.lcm(spatial * patch_h, spatial * patch_w)}
    if temporal != spec.frame_step:
        per_pass = temporal * ((spec.max_frames_per_pass - 1) // temporal) + 1
        chained = spec.max_frames_total > spec.max_frames_per_pass
        changes["frame_step"] = temporal
        changes["max_frames_per_pass"] = per_pass
        changes["max_frames_total"] = _frames_for_total(temporal, spec.default_fps) if chained else per_pass
    return replace(spec, **changes)  # type: ignore[arg-type]  # each key is an int field


def _with_fixed_size(spec: ModelSpec, path: Path) -> ModelSpec:
    """CogVideoX-5b-I2V's learned positional embeddings: its transformer runs at its sample size only."""
    config_path = path / "transformer" / "config.json"
    if not spec.family.startswith("cogvideox") or not config_path.is_file():
        return spec
    config = json.loads(config_path.read_text())
    if not config.get("use_learned_positional_embeddings"):
        return spec
    # The sample size is in latent pixels; CogVideoX's VAE is 8x (720x480 for 90x60).
    width, height = int(config["sample_width"]) * 8, int(config["sample_height"]) * 8
    return replace(
        spec,
        fixed_size=(width, height),
        default_width=width,
        default_height=height,
        max_width=width,
        max_height=height,
    )
