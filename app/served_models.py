"""The models a deployment serves (KINEMA_MODEL_ID and KINEMA_MODELS) and the queue each one's jobs go to.

Pure lookups over the settings and the registry (no torch): the gateway validates a request against the
named model's spec and sends its job to that model's queue; `kinema worker --model ID` takes that queue.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace

from app.config import Settings
from app.model_options import ModelOptions
from model.registry import ModelSpec, UnknownModelError, get_spec

_UNSAFE = re.compile(r"[^a-z0-9_-]+")


def served_paths(settings: Settings) -> dict[str, str | None]:
    """Served model id -> where its pipeline lives; None: the id itself names it (built-in or directory).

    The default model comes first; it may also be one of KINEMA_MODELS' ids.
    """
    default = settings.models.get(settings.model_id)
    served: dict[str, str | None] = {settings.model_id: default.path if default is not None else None}
    served.update({model_id: entry.path for model_id, entry in settings.models.items()})
    return served


def served_options(model_id: str, settings: Settings) -> ModelOptions:
    """The options KINEMA_MODELS sets for `model_id` (none set: every field None or off)."""
    entry = settings.models.get(model_id)
    return entry.options if entry is not None else ModelOptions()


def is_served(model_id: str, settings: Settings) -> bool:
    """Whether this deployment serves `model_id`."""
    return model_id in served_paths(settings)


def served_spec(model_id: str, settings: Settings) -> ModelSpec:
    """The spec of a served model, under its served id, with its KINEMA_MODELS options applied.

    What the gateway validates requests against and fills their defaults from. Raises UnknownModelError.
    """
    paths = served_paths(settings)
    if model_id not in paths:
        raise UnknownModelError(f"{model_id!r} is not served here; available: {', '.join(map(repr, paths))}")
    return with_options(get_spec(model_id, paths[model_id]), served_options(model_id, settings))


def with_options(spec: ModelSpec, options: ModelOptions) -> ModelSpec:
    """`spec` with the request defaults and the frame cap `options` set.

    The cap only lowers the model's own limit, rounded down to a frame count the model makes
    (`frame_step * k + 1`), so the longest request allowed still fits once the worker rounds it up.
    """
    changes: dict[str, int | float] = {}
    if options.default_steps is not None:
        changes["default_steps"] = options.default_steps
    if options.default_guidance is not None:
        changes["default_guidance"] = options.default_guidance
    if options.default_fps is not None:
        changes["default_fps"] = options.default_fps
    if options.max_frames_total is not None:
        step = spec.frame_step
        cap = min(spec.max_frames_total, step * ((options.max_frames_total - 1) // step) + 1)
        changes["max_frames_total"] = cap
        changes["max_frames_per_pass"] = min(spec.max_frames_per_pass, cap)
    return replace(spec, **changes)  # type: ignore[arg-type]  # each key is a field of its type


def queue_for(model_id: str, settings: Settings) -> str:
    """The Celery queue of `model_id`'s jobs: KINEMA_QUEUE_NAME for the default model, else a suffix.

    The suffix is the id made safe for a queue name (lower case, `[a-z0-9_-]`), plus a short hash of the
    id when that changed it, so that two ids never share a queue.
    """
    if model_id == settings.model_id:
        return settings.queue_name
    slug = _UNSAFE.sub("-", model_id.lower()).strip("-")[:48] or "model"
    if slug != model_id:
        slug += "-" + hashlib.sha256(model_id.encode()).hexdigest()[:8]
    return f"{settings.queue_name}.{slug}"


def generation_queues(settings: Settings) -> list[str]:
    """Every served model's queue, the default's first."""
    return [queue_for(model_id, settings) for model_id in served_paths(settings)]
