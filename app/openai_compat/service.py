"""The OpenAI request fields translated into the jobs service's own request, and the served models."""

from __future__ import annotations

import re

from app.config import Settings
from app.errors import InvalidRequest
from app.jobs.parameters import SIZE_MULTIPLE, Parameters, model_spec, resolve
from app.jobs.schemas import GenerateRequest
from app.openai_compat.schemas import CreateVideoRequest, ModelCapabilities, ModelObject
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


def resolve_create(body: CreateVideoRequest, settings: Settings) -> Parameters:
    """The generation a POST /v1/videos asks for, resolved and checked by the same code as /generate."""
    request = GenerateRequest(
        prompt=body.prompt,
        duration=float(parse_seconds(body.seconds, settings)),
        resolution=parse_size(body.size),
        model=served_model(body.model),
        webhook_url=body.webhook_url,
    )
    try:
        return resolve(request, settings)
    except InvalidRequest as exc:
        param = _PARAM_NAMES.get(exc.param or "", exc.param)
        message = exc.message
        if param == "seconds":
            message = message.replace("duration", "seconds", 1)
        raise InvalidRequest(message, param=param, code=exc.code) from exc


def describe_model(spec: ModelSpec, settings: Settings) -> ModelObject:
    """The served model as the SDK's `Model`, with what a request to it may ask for."""
    max_seconds = int(min(MAX_SECONDS, settings.max_duration_s, spec.max_duration_s(spec.default_fps)))
    return ModelObject(
        id=spec.id,
        created=0,
        description=spec.description,
        capabilities=ModelCapabilities(
            family=spec.family,
            modes=["text"],
            default_size=f"{spec.default_width}x{spec.default_height}",
            max_width=min(settings.max_width, spec.max_width),
            max_height=min(settings.max_height, spec.max_height),
            max_pixels=settings.max_pixels,
            size_multiple=SIZE_MULTIPLE,
            default_seconds=str(DEFAULT_SECONDS),
            max_seconds=max_seconds,
            fps=spec.default_fps,
        ),
    )


def served_models(settings: Settings) -> list[ModelObject]:
    """Every model this deployment serves (one: KINEMA_MODEL_ID)."""
    return [describe_model(model_spec(None, settings), settings)]
