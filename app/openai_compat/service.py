"""The OpenAI request fields translated into the jobs service's own request, and the served models."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from app.api_keys.models import ApiKey
from app.config import Settings
from app.errors import APIError, Conflict, InvalidRequest
from app.inputs.service import InputSource
from app.jobs import modes
from app.jobs.parameters import MODE_OF_KIND, SIZE_MULTIPLE, Parameters, max_duration_s, model_spec, resolve
from app.jobs.schemas import GenerateRequest
from app.openai_compat.schemas import CreateVideoRequest, ModelCapabilities, ModelObject
from app.served_models import served_paths
from model.registry import ModelSpec

DEFAULT_SECONDS = 4
MAX_SECONDS = 60
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
_SECONDS = re.compile(r"^\d{1,3}$")
# The jobs service names the fields of /generate; /v1/videos callers know them by these names.
_PARAM_NAMES = {"resolution": "size", "duration": "seconds"}


def served_model(requested: str | None) -> str | None:
    """The model to run: OpenAI's `sora-*` names (the SDK's examples and defaults) mean the served one."""
    if requested is None or requested.strip().lower().startswith("sora-"):
        return None
    return requested


def parse_seconds(value: str | int | None, settings: Settings) -> int:
    """Whole seconds from 1 to the deployment's limit (at most 60); a 400 naming `seconds` otherwise."""
    limit = min(MAX_SECONDS, settings.max_duration_s)
    if value is None:
        return DEFAULT_SECONDS
    text = str(value).strip()
    if isinstance(value, bool) or not _SECONDS.match(text) or not 1 <= int(text) <= limit:
        raise InvalidRequest(
            f'seconds must be a whole number of seconds from 1 to {limit} (e.g. "4", "8", "12"); '
            f"got {value!r}.",
            param="seconds",
        )
    return int(text)


def parse_size(value: str | None) -> str | None:
    """A `WxH` size, checked for its form here and for its limits by the jobs service."""
    if value is None:
        return None
    if not _SIZE.match(value.strip().lower()):
        raise InvalidRequest(
            f'size must be WIDTHxHEIGHT, e.g. "1280x720" or "720x1280"; got {value!r}.', param="size"
        )
    return value.strip().lower()


@contextmanager
def openai_params() -> Iterator[None]:
    """Errors of the jobs service renamed to the fields /v1/videos callers send (`size`, `seconds`);
    a 409 (a parent not finished) tells the SDK not to retry."""
    try:
        yield
    except APIError as exc:
        param = _PARAM_NAMES.get(exc.param or "", exc.param)
        if param == "seconds" and exc.param == "duration":
            exc.message = exc.message.replace("duration", "seconds", 1)
        exc.param = param
        if isinstance(exc, Conflict):
            exc.headers["x-should-retry"] = "false"
        raise


def generate_request(body: CreateVideoRequest, settings: Settings) -> GenerateRequest:
    """The POST /generate request a POST /v1/videos asks for (size and seconds only when given)."""
    fields: dict[str, Any] = {
        "prompt": body.prompt,
        "model": served_model(body.model),
        "webhook_url": body.webhook_url,
        "strength": body.strength,
    }
    # Left out, /generate's defaults apply: 4 s (the SDK's default too) at the model's size.
    if body.seconds is not None:
        fields["duration"] = float(parse_seconds(body.seconds, settings))
    if body.size is not None:
        fields["resolution"] = parse_size(body.size)
    # Only when given: /generate tells `audio: false` with an audio_prompt from leaving it out.
    if body.audio is not None:
        fields["audio"] = body.audio
    if body.audio_prompt is not None:
        fields["audio_prompt"] = body.audio_prompt
    try:
        return GenerateRequest.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc  # the app's handler: a 400 naming the field


def reference_source(body: CreateVideoRequest) -> InputSource | None:
    """The input `input_reference[image_url]` names, if any (an uploaded one arrives as a file part)."""
    reference = body.input_reference
    if reference is None:
        return None
    if reference.file_id is not None:
        raise InvalidRequest(
            "input_reference[file_id] is not supported (Kinema has no Files API): upload the file as "
            "input_reference, or give input_reference[image_url].",
            param="input_reference",
            code="unsupported",
        )
    if reference.image_url is None:
        raise InvalidRequest(
            "input_reference needs an image_url or an uploaded file.", param="input_reference"
        )
    return InputSource(param="input_reference", accepts=modes.IMAGE_ONLY, url=reference.image_url)


def resolve_create(body: CreateVideoRequest, settings: Settings) -> Parameters:
    """Text to video for a POST /v1/videos, resolved and checked by the same code as /generate."""
    with openai_params():
        return resolve(generate_request(body, settings), settings)


def prepare_create(
    key: ApiKey, body: CreateVideoRequest, source: InputSource, settings: Settings
) -> Parameters:
    """A POST /v1/videos with an input_reference: image to video, or an edit of a video."""
    with openai_params():
        return modes.prepare_generate(key, generate_request(body, settings), source, settings)


def describe_model(spec: ModelSpec, settings: Settings) -> ModelObject:
    """The served model as the SDK's `Model`, with what a request to it may ask for."""
    max_seconds = int(min(MAX_SECONDS, max_duration_s(spec, spec.default_fps, settings)))
    return ModelObject(
        id=spec.id,
        created=0,
        description=spec.description,
        capabilities=ModelCapabilities(
            family=spec.family,
            modes=[kind for kind, mode in MODE_OF_KIND.items() if mode in spec.modes],
            default_size=f"{spec.default_width}x{spec.default_height}",
            max_width=min(settings.max_width, spec.max_width),
            max_height=min(settings.max_height, spec.max_height),
            max_pixels=settings.max_pixels,
            size_multiple=SIZE_MULTIPLE,
            default_seconds=str(DEFAULT_SECONDS),
            max_seconds=max_seconds,
            fps=spec.default_fps,
            pipeline=spec.pipeline_class,
            frame_step=spec.frame_step,
            max_frames_per_pass=spec.max_frames_per_pass,
            max_frames_total=spec.max_frames_total,
            default_steps=spec.default_steps,
            default_guidance=spec.default_guidance,
            default=spec.id == settings.model_id,
        ),
    )


def served_models(settings: Settings) -> list[ModelObject]:
    """Every model this deployment serves: KINEMA_MODEL_ID first, then KINEMA_MODELS."""
    return [describe_model(model_spec(model_id, settings), settings) for model_id in served_paths(settings)]
