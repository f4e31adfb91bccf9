"""The generation modes beyond text to video: image to video, extend, edit and remix, as Parameters.

One implementation for both views of the jobs: `/generate` and `/jobs/{id}/...` (app/jobs/router.py) and
`/v1/videos...` (app/openai_compat/router.py) call these, then `service.submit_prepared`, which runs the
same moderation, limits and idempotency as every other submit.
"""

from __future__ import annotations

import math
from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.api_keys.models import ApiKey
from app.config import Settings
from app.errors import Conflict, InvalidRequest, NotFound
from app.inputs import service as inputs
from app.inputs.media import InputType
from app.inputs.service import InputSource, ReceivedInput
from app.jobs.models import Job
from app.jobs.parameters import (
    MIN_SIDE,
    SIZE_MULTIPLE,
    Parameters,
    Shape,
    check_mode,
    combine,
    max_duration_s,
    model_spec,
    resolve,
    resolve_options,
    resolve_shape,
)
from app.jobs.schemas import ExtendRequest, GenerateRequest, GenerationOptions, RemixRequest
from app.jobs.states import JobStatus
from model.registry import ModelSpec

DEFAULT_STRENGTH = 0.6
# Fields of /generate an edit takes from its source video instead: it keeps the source's size and length.
SOURCE_DECIDES = ("duration", "resolution", "aspect_ratio", "fps")
IMAGE_ONLY: frozenset[InputType] = frozenset({"image"})
VIDEO_ONLY: frozenset[InputType] = frozenset({"video"})
IMAGE_OR_VIDEO: frozenset[InputType] = frozenset({"image", "video"})


def url_source(body: GenerateRequest) -> InputSource | None:
    """The input `image_url` or `video_url` names, if either."""
    if body.image_url is not None and body.video_url is not None:
        raise InvalidRequest("Send image_url or video_url, not both.", param="video_url")
    if body.image_url is not None:
        return InputSource(param="image_url", accepts=IMAGE_ONLY, url=body.image_url)
    if body.video_url is not None:
        return InputSource(param="video_url", accepts=VIDEO_ONLY, url=body.video_url)
    return None


def prepare_generate(
    key: ApiKey, body: GenerateRequest, source: InputSource | None, settings: Settings
) -> Parameters:
    """/generate and POST /v1/videos: text to video; image to video when the input is an image; an edit
    of the input when it is a video. The input is checked and stored; its key is in the parameters."""
    if source is None:
        return resolve(body, settings)
    spec = model_spec(body.model, settings)
    options = resolve_options(body, spec, settings)
    # What the request itself gets wrong is refused before anything is downloaded or decoded.
    shape = _image_shape(body, spec, settings, source.param) if source.accepts == IMAGE_ONLY else None
    strength = _edit_strength(body, spec, source.param) if source.accepts == VIDEO_ONLY else None
    with inputs.receive(source, settings) as received:
        if received.type == "image":
            if shape is None:
                shape = _image_shape(body, spec, settings, source.param)
            params = combine(options, shape, kind="image", input_type="image")
        else:
            if strength is None:
                strength = _edit_strength(body, spec, source.param)
            shape = video_shape(received, spec, settings)
            params = combine(options, shape, kind="edit", input_type="video", strength=strength)
        return replace(params, input_key=inputs.store(received, key.id))


def _image_shape(body: GenerateRequest, spec: ModelSpec, settings: Settings, param: str) -> Shape:
    check_mode(spec, "image", param=param)
    if body.strength is not None:
        raise InvalidRequest("strength applies to edits (a video), not to an image.", param="strength")
    return resolve_shape(body, spec, settings)


def _edit_strength(body: GenerateRequest, spec: ModelSpec, param: str) -> float:
    check_mode(spec, "edit", param=param)
    explicit = next((name for name in SOURCE_DECIDES if name in body.model_fields_set), None)
    if explicit is not None:
        raise InvalidRequest(
            f"{explicit} cannot be set for an edit: it keeps the source video's size and length.",
            param=explicit,
        )
    return body.strength if body.strength is not None else DEFAULT_STRENGTH


def video_shape(received: ReceivedInput, spec: ModelSpec, settings: Settings) -> Shape:
    """An uploaded video's size, rate and length, scaled and cut down to the deployment's limits."""
    video = received.video
    assert video is not None  # a received video always carries its probe
    fps = max(1, min(round(video.fps), settings.max_fps))
    max_w, max_h = min(settings.max_width, spec.max_width), min(settings.max_height, spec.max_height)
    pixels = video.width * video.height
    scale = min(1.0, max_w / video.width, max_h / video.height, math.sqrt(settings.max_pixels / pixels))
    # Whole multiples of 8 (H.264's chroma), rounded down so the scaled frame stays within the limits.
    width, height = (
        max(MIN_SIDE, int(side * scale) // SIZE_MULTIPLE * SIZE_MULTIPLE)
        for side in (video.width, video.height)
    )
    longest = math.floor(max_duration_s(spec, fps, settings) * fps)
    num_frames = max(1, min(round(video.duration_s * fps), longest))
    return Shape(width=width, height=height, fps=fps, num_frames=num_frames, duration_s=num_frames / fps)


def find_parent(session: Session, key: ApiKey, parent_id: str, *, param: str) -> Job:
    """The caller's finished job to extend, edit or remix: another key's is a 404, an unfinished one a 409."""
    parent = session.scalar(select(Job).where(Job.id == parent_id, Job.api_key_id == key.id))
    if parent is None:
        raise NotFound(f"No job with id {parent_id!r}.", param=param)
    if parent.status != JobStatus.SUCCEEDED or not parent.video_key:
        raise Conflict(
            f"Job {parent_id} has no finished video to start from (status: {parent.status}).",
            param=param,
            code="parent_not_ready",
        )
    return parent


def parent_shape(parent: Job) -> Shape:
    """A job's finished video: size, rate and whole length (an extended job's includes its parent's)."""
    frames = parent.output_frames or parent.num_frames
    duration = parent.output_duration_s or frames / parent.fps
    return Shape(
        width=parent.width, height=parent.height, fps=parent.fps, num_frames=frames, duration_s=duration
    )


def resolve_extend(
    body: ExtendRequest, parent: Job, settings: Settings, *, duration_param: str = "duration"
) -> Parameters:
    """Continue `parent` by `body.duration` seconds at its size and rate; the whole video within the limit."""
    spec = model_spec(parent.model, settings)  # the model that made it
    options = resolve_options(body, spec, settings)
    check_mode(spec, "extend", param=None)
    source = parent_shape(parent)
    limit = max_duration_s(spec, source.fps, settings)
    total = source.duration_s + body.duration
    if total > limit + 1e-6:
        raise InvalidRequest(
            f"The video is {source.duration_s:g} s; {body.duration:g} s more makes {total:g} s, over the "
            f"limit of {limit:g} s.",
            param=duration_param,
        )
    num_frames = max(1, round(body.duration * source.fps))
    shape = Shape(
        width=source.width,
        height=source.height,
        fps=source.fps,
        num_frames=num_frames,
        duration_s=body.duration,
    )
    return combine(options, shape, kind="extend", parent_id=parent.id)


def resolve_edit_of_job(
    body: GenerationOptions, strength: float | None, parent: Job, settings: Settings, *, kind: str = "edit"
) -> Parameters:
    """An edit (or a remix: the same with a new prompt) of `parent`'s video, at its size and length."""
    spec = model_spec(parent.model, settings)
    options = resolve_options(body, spec, settings)
    check_mode(spec, kind, param=None)
    return combine(
        options,
        parent_shape(parent),
        kind=kind,
        parent_id=parent.id,
        strength=strength if strength is not None else DEFAULT_STRENGTH,
    )


def resolve_remix(body: RemixRequest, parent: Job, settings: Settings) -> Parameters:
    """A remix of `parent`: its video again with a new prompt."""
    return resolve_edit_of_job(body, body.strength, parent, settings, kind="remix")
