"""The models a deployment serves (KINEMA_MODEL_ID and KINEMA_MODELS) and the queue each one's jobs go to.

Pure lookups over the settings and the registry (no torch): the gateway validates a request against the
named model's spec and sends its job to that model's queue; `kinema worker --model ID` takes that queue.
"""

from __future__ import annotations

import hashlib
import re

from app.config import Settings
from model.registry import ModelSpec, UnknownModelError, get_spec

_UNSAFE = re.compile(r"[^a-z0-9_-]+")


def served_paths(settings: Settings) -> dict[str, str | None]:
    """Served model id -> where its pipeline lives; None: the id itself names it (built-in or directory).

    The default model comes first; it may also be one of KINEMA_MODELS' ids.
    """
    served: dict[str, str | None] = {settings.model_id: settings.models.get(settings.model_id)}
    served.update(settings.models)
    return served


def is_served(model_id: str, settings: Settings) -> bool:
    """Whether this deployment serves `model_id`."""
    return model_id in served_paths(settings)


def served_spec(model_id: str, settings: Settings) -> ModelSpec:
    """The spec of a served model, under its served id. Raises UnknownModelError."""
    paths = served_paths(settings)
    if model_id not in paths:
        raise UnknownModelError(f"{model_id!r} is not served here; available: {', '.join(map(repr, paths))}")
    return get_spec(model_id, paths[model_id])


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
