"""Turning a request into the exact generation it asks for, checked against settings and the model."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from app.config import Settings
from app.errors import InvalidRequest
from app.jobs.schemas import GenerateRequest, GenerationOptions
from app.served_models import is_served, served_paths, served_spec
from app.webhooks.targets import checked_url
from model.registry import EDIT, EXTEND, IMAGE, TEXT, ModelSpec, UnknownModelError

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
class Options:
    """What every mode resolves the same way: the model, the prompts and the sampler settings."""

    model: str
    prompt: str
    negative_prompt: str
    seed: int
    num_inference_steps: int
    guidance_scale: float
    webhook_url: str | None  # receives the job's terminal events
    audio: bool = False  # a soundtrack, from `audio_prompt` or else the prompt
    audio_prompt: str | None = None


@dataclass(frozen=True, slots=True)
class Shape:
    """The delivered video's frame size, rate and length."""

    width: int
    height: int
    fps: int
    num_frames: int  # frames in the delivered video
    duration_s: float


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
    num_frames: int  # frames in the delivered video (for extend: the new part only)
    seed: int
    num_inference_steps: int
    guidance_scale: float
    webhook_url: str | None = None  # receives the job's terminal events
    kind: str = "text"  # text, image, extend, edit, remix
    parent_id: str | None = None  # the finished job an extend, edit or remix starts from
    input_key: str | None = None  # the stored input image or video
    input_type: str | None = None  # "image" or "video"
    strength: float | None = None  # edit and remix: how much of the source is re-noised
    audio: bool = False  # a soundtrack, from `audio_prompt` or else the prompt
    audio_prompt: str | None = None


# The pipeline mode (model/registry.py) each job kind runs.
MODE_OF_KIND = {"text": TEXT, "image": IMAGE, "extend": EXTEND, "edit": EDIT, "remix": EDIT}


def model_spec(model_id: str | None, settings: Settings) -> ModelSpec:
    """The spec of the requested model, which must be one this deployment serves."""
    wanted = model_id or settings.model_id
    if not is_served(wanted, settings):
        available = ", ".join(repr(served) for served in served_paths(settings))
        raise InvalidRequest(
            f"Model {wanted!r} is not served here; available: {available}.",
            param="model",
            code="model_not_found",
        )
    try:
        return served_spec(wanted, settings)
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


def check_mode(spec: ModelSpec, kind: str, *, param: str | None) -> None:
    """A 400 naming `param` unless the model can make this kind of job."""
    if MODE_OF_KIND[kind] not in spec.modes:
        raise InvalidRequest(
            f"{spec.id} cannot make {kind} jobs; it makes: {', '.join(spec.modes)}.",
            param=param,
            code="unsupported_mode",
        )


def max_duration_s(spec: ModelSpec, fps: int, settings: Settings) -> float:
    """The longest whole video: KINEMA_MAX_DURATION_S, or less where the model cannot chain segments."""
    return min(float(settings.max_duration_s), spec.max_total_duration_s(fps))


def resolve_options(body: GenerationOptions, spec: ModelSpec, settings: Settings) -> Options:
    """The prompts and sampler settings, defaults filled in; raises InvalidRequest naming the field."""
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
    audio, audio_prompt = resolve_audio(body, settings)
    steps = body.num_inference_steps if body.num_inference_steps is not None else spec.default_steps
    if steps > settings.max_steps:
        raise InvalidRequest(
            f"num_inference_steps must be at most {settings.max_steps}.", param="num_inference_steps"
        )
    return Options(
        model=spec.id,
        prompt=prompt,
        negative_prompt=negative,
        seed=body.seed if body.seed is not None else secrets.randbelow(2**32),
        num_inference_steps=steps,
        guidance_scale=body.guidance_scale if body.guidance_scale is not None else spec.default_guidance,
        webhook_url=(
            None if body.webhook_url is None else checked_url(body.webhook_url, settings, param="webhook_url")
        ),
        audio=audio,
        audio_prompt=audio_prompt,
    )


def resolve_audio(body: GenerationOptions, settings: Settings) -> tuple[bool, str | None]:
    """Whether the job gets a soundtrack and its prompt; a 400 naming the field when the deployment has
    no audio model, or the audio prompt is empty, too long, or sent with `audio: false`."""
    if body.audio_prompt is None:
        audio_prompt = None
    else:
        audio_prompt = body.audio_prompt.strip()
        if not audio_prompt:
            raise InvalidRequest("audio_prompt must not be empty.", param="audio_prompt")
        if len(audio_prompt) > settings.max_prompt_length:
            raise InvalidRequest(
                f"audio_prompt is {len(audio_prompt)} characters; the limit is {settings.max_prompt_length}.",
                param="audio_prompt",
            )
        if "audio" in body.model_fields_set and not body.audio:
            raise InvalidRequest(
                "audio_prompt asks for a soundtrack but audio is false: leave audio out or set it to true.",
                param="audio_prompt",
            )
    audio = body.audio or audio_prompt is not None
    if audio and not settings.audio_model:
        param = "audio" if body.audio else "audio_prompt"
        raise InvalidRequest(
            f"This deployment has no audio model (KINEMA_AUDIO_MODEL), so it cannot add a soundtrack; "
            f"leave out {param}.",
            param=param,
            code="audio_unavailable",
        )
    return audio, audio_prompt


def resolve_shape(body: GenerateRequest, spec: ModelSpec, settings: Settings) -> Shape:
    """The requested size, frame rate and length, within the deployment's and the model's limits."""
    width, height = resolve_size(body.resolution, body.aspect_ratio, spec, settings)
    fps = body.fps if body.fps is not None else spec.default_fps
    if fps > settings.max_fps:
        raise InvalidRequest(f"fps must be at most {settings.max_fps}.", param="fps")
    # The whole video, however many passes of the model it takes (the worker chains segments).
    max_duration = max_duration_s(spec, fps, settings)
    if body.duration > max_duration:
        raise InvalidRequest(
            f"duration {body.duration:g} s is over the limit of {max_duration:g} s "
            f"at {fps} fps for {spec.id}.",
            param="duration",
        )
    # The video holds exactly duration x fps frames; the model may make a few more (its 4k+1 rule).
    num_frames = max(1, round(body.duration * fps))
    return Shape(width=width, height=height, fps=fps, num_frames=num_frames, duration_s=float(body.duration))


def combine(options: Options, shape: Shape, **mode: Any) -> Parameters:
    """The job's parameters: the options, the shape, and the mode's fields (kind, parent_id, input...)."""
    return Parameters(
        model=options.model,
        prompt=options.prompt,
        negative_prompt=options.negative_prompt,
        duration_s=shape.duration_s,
        width=shape.width,
        height=shape.height,
        fps=shape.fps,
        num_frames=shape.num_frames,
        seed=options.seed,
        num_inference_steps=options.num_inference_steps,
        guidance_scale=options.guidance_scale,
        webhook_url=options.webhook_url,
        audio=options.audio,
        audio_prompt=options.audio_prompt,
        **mode,
    )


def resolve(body: GenerateRequest, settings: Settings) -> Parameters:
    """Text to video, defaults filled in and every limit checked; raises InvalidRequest naming the field."""
    spec = model_spec(body.model, settings)
    options = resolve_options(body, spec, settings)
    check_mode(spec, "text", param="model")
    if body.strength is not None:
        raise InvalidRequest("strength applies to edits: send a video with it.", param="strength")
    return combine(options, resolve_shape(body, spec, settings))
