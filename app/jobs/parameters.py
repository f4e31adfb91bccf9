"""Turning a request into the exact generation it asks for, checked against settings and the model."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from app.config import Settings
from app.errors import InvalidRequest
from app.jobs.schemas import GenerateRequest
from app.webhooks.targets import checked_url
from model.registry import ModelSpec, UnknownModelError, get_spec

# (resolution, aspect ratio) -> (width, height); every side a multiple of 8 for H.264's 4:2:0 chroma.
PRESETS: dict[tuple[str, str], tuple[int, int]] = {
    ("480p", "16:9"): (832, 480),
    ("480p", "9:16"): (480, 832),
    ("480p", "1:1"): (480, 480),
    ("480p", "4:3"): (640, 480),
    ("480p", "3:4"): (480, 640),
    ("720p", "16:9"): (1280, 720),
    ("720p", "9:16"): (720, 1280),
    ("720p", "1:1"): (720, 720),
    ("720p", "4:3"): (960, 720),
    ("720p", "3:4"): (720, 960),
    ("1080p", "16:9"): (1920, 1080),
    ("1080p", "9:16"): (1080, 1920),
    ("1080p", "1:1"): (1080, 1080),
    ("1080p", "4:3"): (1440, 1080),
    ("1080p", "3:4"): (1080, 1440),
}
SIZE_MULTIPLE = 8
MIN_SIDE = 64
_WXH = re.compile(r"^(\d{1,5})x(\d{1,5})$")


@dataclass(frozen=True, slots=True)
class Parameters:
    """A fully resolved generation: what the job row stores and the worker runs."""

    model: str
    prompt: str
    negative_prompt: str
    duration_s: float
    width: int
    height: int
    fps: int
    num_frames: int  # frames in the delivered video
    seed: int
    num_inference_steps: int
    guidance_scale: float
    webhook_url: str | None = None  # receives the job's terminal events


def model_spec(model_id: str | None, settings: Settings) -> ModelSpec:
    """The spec of the requested model, which must be one this deployment serves."""
    wanted = model_id or settings.model_id
    if wanted != settings.model_id:
        raise InvalidRequest(
            f"Model {wanted!r} is not served here; available: {settings.model_id!r}.",
            param="model",
            code="model_not_found",
        )
    try:
        return get_spec(wanted)
    except UnknownModelError as exc:
        raise InvalidRequest(str(exc), param="model", code="model_not_found") from exc


def resolve_size(
    resolution: str | None, aspect_ratio: str | None, spec: ModelSpec, settings: Settings
) -> tuple[int, int]:
    """Width and height for a preset or `WxH`, within the deployment's and the model's limits."""
    if resolution is None:
        if aspect_ratio is not None:
            raise InvalidRequest(
                "aspect_ratio needs a preset resolution (480p, 720p, 1080p).", param="aspect_ratio"
            )
        width, height = spec.default_width, spec.default_height
    elif (match := _WXH.match(resolution.strip().lower())) is not None:
        if aspect_ratio is not None:
            raise InvalidRequest("aspect_ratio applies to preset resolutions, not WxH.", param="aspect_ratio")
        width, height = int(match.group(1)), int(match.group(2))
        if width % SIZE_MULTIPLE or height % SIZE_MULTIPLE:
            raise InvalidRequest(
                f"Width and height must be multiples of {SIZE_MULTIPLE}; got {width}x{height}.",
                param="resolution",
            )
    else:
        preset = PRESETS.get((resolution.strip().lower(), aspect_ratio or "16:9"))
        if preset is None:
            raise InvalidRequest(
                f"Unknown resolution {resolution!r}: use 480p, 720p, 1080p or WxH such as 1280x720.",
                param="resolution",
            )
        width, height = preset
    max_w, max_h = min(settings.max_width, spec.max_width), min(settings.max_height, spec.max_height)
    if (
        not (MIN_SIDE <= width <= max_w and MIN_SIDE <= height <= max_h)
        or width * height > settings.max_pixels
    ):
        raise InvalidRequest(
            f"Resolution {width}x{height} is outside the limits: each side {MIN_SIDE}..{max_w} x "
            f"{MIN_SIDE}..{max_h}, at most {settings.max_pixels} pixels.",
            param="resolution",
        )
    return width, height


def resolve(body: GenerateRequest, settings: Settings) -> Parameters:
    """Every default filled in and every limit checked; raises InvalidRequest naming the field."""
    prompt = body.prompt.strip()
    if not prompt:
        raise InvalidRequest("prompt must not be empty.", param="prompt", code="missing_field")
    if len(prompt) > settings.max_prompt_length:
        raise InvalidRequest(
            f"prompt is {len(prompt)} characters; the limit is {settings.max_prompt_length}.", param="prompt"
        )
    negative = (body.negative_prompt or "").strip()
    if len(negative) > settings.max_prompt_length:
        raise InvalidRequest(
            f"negative_prompt is longer than {settings.max_prompt_length} characters.",
            param="negative_prompt",
        )
    spec = model_spec(body.model, settings)
    width, height = resolve_size(body.resolution, body.aspect_ratio, spec, settings)
    fps = body.fps if body.fps is not None else spec.default_fps
    if fps > settings.max_fps:
        raise InvalidRequest(f"fps must be at most {settings.max_fps}.", param="fps")
    max_duration = min(float(settings.max_duration_s), spec.max_duration_s(fps))
    if body.duration > max_duration:
        raise InvalidRequest(
            f"duration {body.duration:g} s is over the limit of {max_duration:g} s "
            f"at {fps} fps for {spec.id}.",
            param="duration",
        )
    # The video holds exactly duration x fps frames; the model may make a few more (its 4k+1 rule).
    num_frames = max(1, round(body.duration * fps))
    steps = body.num_inference_steps if body.num_inference_steps is not None else spec.default_steps
    if steps > settings.max_steps:
        raise InvalidRequest(
            f"num_inference_steps must be at most {settings.max_steps}.", param="num_inference_steps"
        )
    return Parameters(
        model=spec.id,
        prompt=prompt,
        negative_prompt=negative,
        duration_s=float(body.duration),
        width=width,
        height=height,
        fps=fps,
        num_frames=num_frames,
        seed=body.seed if body.seed is not None else secrets.randbelow(2**32),
        num_inference_steps=steps,
        guidance_scale=body.guidance_scale if body.guidance_scale is not None else spec.default_guidance,
        webhook_url=(
            None if body.webhook_url is None else checked_url(body.webhook_url, settings, param="webhook_url")
        ),
    )
