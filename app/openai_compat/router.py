"""The OpenAI-compatible surface: /v1/videos and /v1/models, so the `openai` SDK works unchanged.

Every handler is the jobs service seen through `mapping`: the same rows, submits, cancels and downloads
as /generate and /jobs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from app.deps import SessionDep, SettingsDep
from app.errors import Conflict, InvalidRequest, NotFound
from app.jobs import cancel, service
from app.jobs.delete import delete_job
from app.jobs.idempotency import parse_header
from app.jobs.models import Job
from app.jobs.parameters import model_spec
from app.jobs.router import download
from app.jobs.schemas import JobOut
from app.openai_compat import mapping
from app.openai_compat.schemas import (
    CreateVideoRequest,
    ModelList,
    ModelObject,
    Variant,
    Video,
    VideoDeleted,
    VideoList,
)
from app.openai_compat.service import describe_model, resolve_create, served_models
from app.security import GenerateKey, ReadKey
from app.storage import get_storage

router = APIRouter(prefix="/v1", tags=["openai"])

POLL_AFTER_HEADER = "openai-poll-after-ms"
_NOT_YET = "arrives with image-to-video and video-to-video generation; this deployment serves text to video"


def _unsupported(param: str, what: str) -> InvalidRequest:
    return InvalidRequest(f"{what} is not supported yet: it {_NOT_YET}.", param=param, code="unsupported")


async def create_body(request: Request) -> CreateVideoRequest:
    """The POST /v1/videos fields, from a multipart or urlencoded form or a JSON object."""
    content_type = request.headers.get("content-type", "").lower()
    fields: dict[str, Any] = {}
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form()
        for name, value in form.multi_items():
            if name.split("[", 1)[0] == "input_reference":
                raise _unsupported("input_reference", "input_reference (a reference image or video)")
            if not isinstance(value, str):
                raise InvalidRequest(f"{name} must be a text field, not a file.", param=name)
            fields[name] = value
    else:
        try:
            data = await request.json()
        except ValueError as exc:
            raise InvalidRequest("The request body is not valid JSON.", code="invalid_json") from exc
        if not isinstance(data, dict):
            raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
        if "input_reference" in data:
            raise _unsupported("input_reference", "input_reference (a reference image or video)")
        fields = data
    try:
        return CreateVideoRequest.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc  # the app's handler: a 400 naming the field


def _video(
    request: Request, response: Response, settings: SettingsDep, session: SessionDep, job: Job
) -> Video:
    """The job presented by the jobs service, as a `Video`; while unfinished, when to poll again."""
    out: JobOut = service.present(
        session, job, base_url=service.public_base_url(settings, str(request.base_url))
    )
    wait_ms = mapping.poll_after_ms(out)
    if wait_ms is not None:
        response.headers[POLL_AFTER_HEADER] = str(wait_ms)
    return mapping.to_video(out)


@router.post("/videos", response_model=Video, summary="Create a video (text to video)")
def create_video(
    body: Annotated[CreateVideoRequest, Depends(create_body)],
    request: Request,
    response: Response,
    key: GenerateKey,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None,
        Header(description="Retry-safe submits: the same key and body return the first video (for 24 h)."),
    ] = None,
) -> Video:
    """Queue a generation; answers 200 with the video object, like OpenAI's API."""
    idempotency = parse_header(
        idempotency_key, endpoint="POST /v1/videos", body=body.model_dump(mode="json", exclude_none=True)
    )
    submitted = service.submit_once(session, key, resolve_create(body, settings), idempotency)
    if submitted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return _video(request, response, settings, session, submitted.job)


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


@router.post("/videos/{video_id}/remix", summary="Not supported yet")
def remix_video(video_id: str, key: GenerateKey) -> Response:
    raise _unsupported("video_id", "Remixing a video")


@router.post("/videos/edits", summary="Not supported yet")
def edit_video(key: GenerateKey) -> Response:
    raise _unsupported("video", "Editing a video")


@router.post("/videos/extensions", summary="Not supported yet")
def extend_video(key: GenerateKey) -> Response:
    raise _unsupported("video", "Extending a video")


@router.get("/models", response_model=ModelList, summary="The served models and their capabilities")
def list_models(key: ReadKey, settings: SettingsDep) -> ModelList:
    return ModelList(data=served_models(settings))


@router.get("/models/{model_id:path}", response_model=ModelObject, summary="One served model")
def retrieve_model(model_id: str, key: ReadKey, settings: SettingsDep) -> ModelObject:
    served = settings.model_id
    if model_id != served:
        raise NotFound(f"No model {model_id!r}; this deployment serves {served!r}.", param="model")
    return describe_model(model_spec(model_id, settings), settings)
