"""The OpenAI-compatible surface: /v1/videos and /v1/models, so the `openai` SDK works unchanged.

Every handler is the jobs service seen through `mapping`: the same rows, submits, cancels and downloads
as /generate and /jobs.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from app.config import Settings
from app.deps import SessionDep, SettingsDep
from app.errors import Conflict, InvalidRequest, NotFound
from app.inputs.forms import digest, is_form, parse_fields, read_form
from app.inputs.media import InputType
from app.inputs.service import InputSource
from app.jobs import cancel, modes, service
from app.jobs.delete import delete_job
from app.jobs.idempotency import IdempotentRequest, parse_header
from app.jobs.models import Job
from app.jobs.parameters import Parameters, model_spec
from app.jobs.router import download
from app.jobs.schemas import ExtendRequest, GenerateRequest, GenerationOptions, JobOut, RemixRequest
from app.openai_compat import mapping
from app.openai_compat.schemas import (
    CreateVideoRequest,
    EditVideoRequest,
    ExtendVideoRequest,
    ModelList,
    ModelObject,
    RemixVideoRequest,
    Variant,
    Video,
    VideoDeleted,
    VideoList,
)
from app.openai_compat.service import (
    describe_model,
    openai_params,
    parse_seconds,
    prepare_create,
    reference_source,
    resolve_create,
    served_models,
)
from app.openapi import request_body_doc
from app.security import GenerateKey, ReadKey
from app.served_models import is_served, served_paths
from app.storage import get_storage

router = APIRouter(prefix="/v1", tags=["openai"])

POLL_AFTER_HEADER = "openai-poll-after-ms"
IDEMPOTENCY_HEADER = Header(
    description="Retry-safe submits: the same key and body return the first video (for 24 h)."
)
BodyT = TypeVar("BodyT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Submission(Generic[BodyT]):
    """A request body, and the input its file part carries (if any)."""

    body: BodyT
    upload: InputSource | None = None


def nest(fields: dict[str, str]) -> dict[str, Any]:
    """Form fields with `a[b]` names (how the SDK encodes objects) as nested objects: {"a": {"b": ...}}."""
    nested: dict[str, Any] = {}
    for name, value in fields.items():
        outer, bracket, rest = name.partition("[")
        if not bracket:
            if outer in nested:
                raise InvalidRequest(f"{outer} is given more than once.", param=outer)
            nested[outer] = value
            continue
        inner = rest.removesuffix("]")
        group = nested.setdefault(outer, {})
        if not isinstance(group, dict) or not inner or "[" in inner or inner in group:
            raise InvalidRequest(f"Malformed or repeated field {name!r}.", param=outer)
        group[inner] = value
    return nested


def submission_body(
    model: type[BodyT], *, file_part: str | None = None, accepts: frozenset[InputType] = frozenset()
) -> Callable[[Request, Settings], AsyncIterator[Submission[BodyT]]]:
    """A dependency reading `model` from a multipart or urlencoded form (what the SDK sends) or JSON;
    `file_part` names the one file a form may carry, which may hold what `accepts` lists."""

    async def read(request: Request, settings: SettingsDep) -> AsyncIterator[Submission[BodyT]]:
        if not is_form(request):
            try:
                data = json.loads(await request.body())
            except ValueError as exc:
                raise InvalidRequest("The request body is not valid JSON.", code="invalid_json") from exc
            if not isinstance(data, dict):
                raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
            yield Submission(parse_fields(model, data))
            return
        parts = frozenset({file_part}) if file_part else frozenset()
        async with read_form(request, settings, file_fields=parts) as form:
            fields = nest(form.fields)
            upload = None
            if file_part is not None and file_part in form.files:
                if file_part in fields:
                    raise InvalidRequest(
                        f"Send {file_part} as a file or by reference, not both.", param=file_part
                    )
                upload = InputSource(param=file_part, accepts=accepts, file=form.files[file_part].file)
            yield Submission(parse_fields(model, fields), upload)

    return read


CreateBody = Annotated[
    Submission[CreateVideoRequest],
    Depends(submission_body(CreateVideoRequest, file_part="input_reference", accepts=modes.IMAGE_OR_VIDEO)),
]
RemixBody = Annotated[Submission[RemixVideoRequest], Depends(submission_body(RemixVideoRequest))]
EditBody = Annotated[
    Submission[EditVideoRequest],
    Depends(submission_body(EditVideoRequest, file_part="video", accepts=modes.VIDEO_ONLY)),
]
ExtendBody = Annotated[
    Submission[ExtendVideoRequest],
    Depends(submission_body(ExtendVideoRequest, file_part="video", accepts=modes.VIDEO_ONLY)),
]


def _idempotency(header: str | None, endpoint: str, submission: Submission[Any]) -> IdempotentRequest | None:
    """The Idempotency-Key and a fingerprint of the body, an uploaded file by its SHA-256."""
    if header is None:
        return None
    fingerprint = submission.body.model_dump(mode="json", exclude_none=True)
    upload = submission.upload
    if upload is not None and upload.file is not None:
        fingerprint[upload.param] = {"sha256": digest(upload.file)}
    return parse_header(header, endpoint=endpoint, body=fingerprint)


def _video(request: Request, response: Response, settings: Settings, session: Session, job: Job) -> Video:
    """The job presented by the jobs service, as a `Video`; while unfinished, when to poll again."""
    out = service.present(session, job, base_url=service.public_base_url(settings, str(request.base_url)))
    return _as_video(response, out)


def _as_video(response: Response, out: JobOut) -> Video:
    """`out` as a `Video`; while unfinished, the header that says when to poll again."""
    wait_ms = mapping.poll_after_ms(out)
    if wait_ms is not None:
        response.headers[POLL_AFTER_HEADER] = str(wait_ms)
    return mapping.to_video(out)


def _submitted(
    request: Request, response: Response, settings: Settings, session: Session, submitted: service.Submission
) -> Video:
    if submitted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    base_url = service.public_base_url(settings, str(request.base_url))
    return _as_video(response, service.present_submission(session, submitted, base_url=base_url))


@router.post(
    "/videos",
    response_model=Video,
    summary="Create a video: text to video, image to video, or an edit of an uploaded video",
    openapi_extra=request_body_doc(CreateVideoRequest, file_part="input_reference"),
)
def create_video(
    submission: CreateBody,
    request: Request,
    response: Response,
    key: GenerateKey,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, IDEMPOTENCY_HEADER] = None,
) -> Video:
    """Queue a generation; answers 200 with the video object, like OpenAI's API."""
    body = submission.body
    idempotency = _idempotency(idempotency_key, "POST /v1/videos", submission)
    reference = reference_source(body)
    if submission.upload is not None and reference is not None:
        raise InvalidRequest(
            "Send input_reference as a file or as an image_url, not both.", param="input_reference"
        )
    source = submission.upload or reference
    if source is None:
        submitted = service.submit_once(session, key, resolve_create(body, settings), idempotency)
    else:
        submitted = service.submit_prepared(
            session, key, lambda: prepare_create(key, body, source, settings), idempotency
        )
    return _submitted(request, response, settings, session, submitted)


@router.get("/videos", response_model=VideoList, summary="List your videos")
def list_videos(
    request: Request,
    response: Response,
    key: ReadKey,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 20,
    after: Annotated[str | None, Query(description="The `last_id` of the previous page.")] = None,
    order: Annotated[Literal["asc", "desc"], Query(description="By creation time.")] = "desc",
) -> VideoList:
    jobs, has_more = service.list_jobs(
        session, key, limit=limit, after=after, status=None, oldest_first=order == "asc"
    )
    data = [_video(request, Response(), settings, session, job) for job in jobs]
    return VideoList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=has_more,
    )


@router.get("/videos/{video_id}", response_model=Video, summary="Retrieve a video")
def retrieve_video(
    video_id: str,
    request: Request,
    response: Response,
    key: ReadKey,
    session: SessionDep,
    settings: SettingsDep,
) -> Video:
    """The video now; while it is unfinished the `openai-poll-after-ms` header says when to ask again."""
    return _video(request, response, settings, session, service.get_job(session, key, video_id))


@router.delete("/videos/{video_id}", response_model=VideoDeleted, summary="Delete a video and its files")
def delete_video(video_id: str, key: GenerateKey, session: SessionDep, settings: SettingsDep) -> VideoDeleted:
    """Cancels it if unfinished, deletes its MP4, thumbnail and spritesheet; then it is a 404."""
    return VideoDeleted(id=delete_job(session, key, video_id, lease_s=settings.job_lease_s))


@router.post("/videos/{video_id}/cancel", response_model=Video, summary="Cancel a queued or running video")
def cancel_video(
    video_id: str,
    request: Request,
    response: Response,
    key: GenerateKey,
    session: SessionDep,
    settings: SettingsDep,
) -> Video:
    """Canceled videos read as `failed` with error code `canceled`; a finished one is a 409."""
    try:
        job = cancel.cancel(session, key, video_id, lease_s=settings.job_lease_s)
    except Conflict as exc:
        exc.headers["x-should-retry"] = "false"  # the SDK retries 409s; this one cannot change
        raise
    return _video(request, response, settings, session, job)


_CONTENT = {
    "video": ("video/mp4", "mp4"),
    "thumbnail": ("image/jpeg", "jpg"),
    "spritesheet": ("image/jpeg", "jpg"),
}


@router.get(
    "/videos/{video_id}/content",
    summary="Download the video, its thumbnail or its spritesheet",
    responses={
        302: {"description": "Redirect to a presigned S3 URL (the SDK follows it)"},
        200: {"content": {"video/mp4": {}, "image/jpeg": {}}},
    },
)
def download_content(
    video_id: str, key: ReadKey, session: SessionDep, variant: Annotated[Variant, Query()] = "video"
) -> Response:
    """The MP4, the JPEG thumbnail (middle frame) or the JPEG spritesheet (a frame grid); 409 until done."""
    job = service.get_job(session, key, video_id)
    object_key = {"video": job.video_key, "thumbnail": job.thumbnail_key, "spritesheet": job.spritesheet_key}[
        variant
    ]
    # Videos made before spritesheets existed have none: say so rather than redirect to a missing object.
    if variant == "spritesheet" and object_key is not None and not get_storage().exists(object_key):
        raise NotFound(f"Video {job.id} has no spritesheet.", param="variant", code="output_missing")
    media_type, extension = _CONTENT[variant]
    suffix = "" if variant == "video" else f".{variant}"
    try:
        return download(job, object_key, media_type, f"{job.id}{suffix}.{extension}")
    except Conflict as exc:
        exc.headers["x-should-retry"] = "false"  # the SDK retries 409s; poll the video instead
        raise


@router.post(
    "/videos/{video_id}/remix",
    response_model=Video,
    summary="Remix a completed video",
    openapi_extra=request_body_doc(RemixVideoRequest),
)
def remix_video(
    video_id: str,
    submission: RemixBody,
    request: Request,
    response: Response,
    key: GenerateKey,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, IDEMPOTENCY_HEADER] = None,
) -> Video:
    """A new video: the completed one re-made with a new prompt, at its size and length."""
    body = submission.body
    idempotency = _idempotency(idempotency_key, f"POST /v1/videos/{video_id}/remix", submission)

    def prepare() -> Parameters:
        with openai_params():
            parent = modes.find_parent(session, key, video_id, param="video_id")
            request_body = RemixRequest(
                prompt=body.prompt, strength=body.strength, webhook_url=body.webhook_url
            )
            return modes.resolve_remix(request_body, parent, settings)

    submitted = service.submit_prepared(session, key, prepare, idempotency)
    return _submitted(request, response, settings, session, submitted)


@router.post(
    "/videos/edits",
    response_model=Video,
    summary="Edit a completed or an uploaded video",
    openapi_extra=request_body_doc(EditVideoRequest, file_part="video"),
)
def edit_video(
    submission: EditBody,
    request: Request,
    response: Response,
    key: GenerateKey,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, IDEMPOTENCY_HEADER] = None,
) -> Video:
    """Video to video from `video[id]` (a completed video) or an uploaded `video`, at its size and length."""
    body, upload = submission.body, submission.upload
    if upload is None and body.video is None:
        raise InvalidRequest(
            "video is required: video[id] or an uploaded file.", param="video", code="missing_field"
        )
    idempotency = _idempotency(idempotency_key, "POST /v1/videos/edits", submission)

    def prepare() -> Parameters:
        with openai_params():
            if upload is not None:
                generate = GenerateRequest(
                    prompt=body.prompt, strength=body.strength, webhook_url=body.webhook_url
                )
                return modes.prepare_generate(key, generate, upload, settings)
            assert body.video is not None
            parent = modes.find_parent(session, key, body.video.id, param="video")
            options = GenerationOptions(prompt=body.prompt, webhook_url=body.webhook_url)
            return modes.resolve_edit_of_job(options, body.strength, parent, settings)

    submitted = service.submit_prepared(session, key, prepare, idempotency)
    return _submitted(request, response, settings, session, submitted)


@router.post(
    "/videos/extensions",
    response_model=Video,
    summary="Extend a completed video",
    openapi_extra=request_body_doc(ExtendVideoRequest, file_part="video"),
)
def extend_video(
    submission: ExtendBody,
    request: Request,
    response: Response,
    key: GenerateKey,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, IDEMPOTENCY_HEADER] = None,
) -> Video:
    """A new video: the completed `video[id]` followed by `seconds` more (`seconds` reports the new part)."""
    body = submission.body
    if submission.upload is not None:
        raise InvalidRequest(
            "Extensions continue a completed video: give video[id]. To change an uploaded video, use "
            "POST /v1/videos/edits.",
            param="video",
            code="unsupported",
        )
    if body.video is None:
        raise InvalidRequest("video[id] is required.", param="video", code="missing_field")
    video_id = body.video.id
    seconds = parse_seconds(body.seconds, settings)
    idempotency = _idempotency(idempotency_key, "POST /v1/videos/extensions", submission)

    def prepare() -> Parameters:
        with openai_params():
            parent = modes.find_parent(session, key, video_id, param="video")
            extend = ExtendRequest(prompt=body.prompt, duration=float(seconds), webhook_url=body.webhook_url)
            return modes.resolve_extend(extend, parent, settings, duration_param="seconds")

    submitted = service.submit_prepared(session, key, prepare, idempotency)
    return _submitted(request, response, settings, session, submitted)


@router.get("/models", response_model=ModelList, summary="The served models and their capabilities")
def list_models(key: ReadKey, settings: SettingsDep) -> ModelList:
    return ModelList(data=served_models(settings))


@router.get("/models/{model_id:path}", response_model=ModelObject, summary="One served model")
def retrieve_model(model_id: str, key: ReadKey, settings: SettingsDep) -> ModelObject:
    if not is_served(model_id, settings):
        served = ", ".join(repr(served) for served in served_paths(settings))
        raise NotFound(f"No model {model_id!r}; this deployment serves {served}.", param="model")
    return describe_model(model_spec(model_id, settings), settings)
