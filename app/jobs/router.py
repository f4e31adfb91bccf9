"""HTTP endpoints for jobs: submit, poll, list, cancel, stream events, download."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from app.api_keys.models import ApiKey
from app.config import Settings
from app.deps import SessionDep, SettingsDep
from app.errors import Conflict, InvalidRequest, NotFound
from app.inputs.forms import digest, is_form, parse_fields, parse_json, read_form
from app.inputs.service import InputSource
from app.jobs import cancel, modes, service, stream
from app.jobs.idempotency import parse_header
from app.jobs.models import Job
from app.jobs.parameters import Parameters, resolve
from app.jobs.schemas import ExtendRequest, GenerateRequest, JobList, JobOut, RemixRequest
from app.jobs.service import Submission
from app.jobs.states import JobStatus
from app.security import GenerateKey, ReadKey
from app.storage import get_storage

router = APIRouter(tags=["jobs"])


def _present(request: Request, settings: Settings, session: Session, job: Job) -> JobOut:
    return service.present(session, job, base_url=service.public_base_url(settings, str(request.base_url)))


# The file parts /generate takes, and what each may hold.
FILE_PARTS = {"image": modes.IMAGE_ONLY, "video": modes.VIDEO_ONLY}
IDEMPOTENCY_HEADER = Header(
    description="Retry-safe submits: the same key and body return the first job (for 24 h)."
)
_FORM_SCHEMA = {
    "type": "object",
    "description": "The JSON fields as form fields, and at most one file part: `image` (PNG, JPEG, WebP: "
    "image to video) or `video` (MP4, MOV, WebM: an edit).",
    "properties": {
        "prompt": {"type": "string"},
        "image": {"type": "string", "format": "binary"},
        "video": {"type": "string", "format": "binary"},
    },
    "required": ["prompt"],
}


@dataclass(frozen=True, slots=True)
class GenerateSubmission:
    """A POST /generate body: its fields, and the input a file part carries (if any)."""

    body: GenerateRequest
    upload: InputSource | None = None


async def generate_body(request: Request, settings: SettingsDep) -> AsyncIterator[GenerateSubmission]:
    """The POST /generate body, from JSON or from a form with an `image` or `video` file part."""
    if not is_form(request):
        yield GenerateSubmission(parse_json(GenerateRequest, await request.body()))
        return
    async with read_form(request, settings, file_fields=frozenset(FILE_PARTS)) as form:
        body = parse_fields(GenerateRequest, form.fields)
        names = sorted(form.files)
        if len(names) > 1:
            raise InvalidRequest("Send one input: an image or a video, not both.", param=names[-1])
        if names and (body.image_url is not None or body.video_url is not None):
            raise InvalidRequest(f"Send the {names[0]} as a file or as a URL, not both.", param=names[0])
        upload = None
        if names:
            name = names[0]
            upload = InputSource(param=name, accepts=FILE_PARTS[name], file=form.files[name].file)
        yield GenerateSubmission(body, upload)


def _accepted(
    request: Request, response: Response, settings: Settings, session: Session, submitted: Submission
) -> JobOut:
    """A submitted job's 202: `Location`, and `Idempotent-Replayed` when an earlier request made it."""
    job = submitted.job
    response.headers["Location"] = f"/jobs/{job.id}"
    if submitted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    base_url = service.public_base_url(settings, str(request.base_url))
    return service.present_submission(session, submitted, base_url=base_url)


@router.post(
    "/generate",
    status_code=202,
    response_model=JobOut,
    summary="Submit a job: text to video, image to video, or an edit of a video",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": GenerateRequest.model_json_schema()},
                "multipart/form-data": {"schema": _FORM_SCHEMA},
            },
        }
    },
)
async def generate(
    submission: Annotated[GenerateSubmission, Depends(generate_body)],
    request: Request,
    response: Response,
    key: GenerateKey,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, IDEMPOTENCY_HEADER] = None,
) -> JobOut:
    """Queue a generation. Answers 202 with the job and a `Location` to poll."""
    # The hot path: all its blocking work in one threadpool hop (a sync endpoint costs FastAPI two).
    return await run_in_threadpool(
        _generate, submission, request, response, key, session, settings, idempotency_key
    )


def _generate(
    submission: GenerateSubmission,
    request: Request,
    response: Response,
    key: ApiKey,
    session: Session,
    settings: Settings,
    idempotency_key: str | None,
) -> JobOut:
    body, upload = submission.body, submission.upload
    fingerprint = body.model_dump(mode="json", exclude_unset=True)
    if upload is not None and upload.file is not None and idempotency_key is not None:
        fingerprint[upload.param] = {"sha256": digest(upload.file)}
    idempotency = parse_header(idempotency_key, endpoint="POST /generate", body=fingerprint)
    source = upload or modes.url_source(body)
    if source is None:
        submitted = service.submit_once(session, key, resolve(body, settings), idempotency)
    else:
        submitted = service.submit_prepared(
            session, key, lambda: modes.prepare_generate(key, body, source, settings), idempotency
        )
    return _accepted(request, response, settings, session, submitted)


@router.post(
    "/jobs/{job_id}/extend",
    status_code=202,
    response_model=JobOut,
    summary="Continue a finished video: a new job whose video is the old one and then more",
)
def extend_job(
    job_id: str,
    body: ExtendRequest,
    request: Request,
    response: Response,
    key: GenerateKey,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, IDEMPOTENCY_HEADER] = None,
) -> JobOut:
    """202 with the new job (kind `extend`); the parent must be yours and succeeded (404 / 409)."""
    return _submit_from_parent(
        job_id,
        "extend",
        body,
        lambda parent: modes.resolve_extend(body, parent, settings),
        request,
        response,
        key,
        session,
        settings,
        idempotency_key,
    )


@router.post(
    "/jobs/{job_id}/remix",
    status_code=202,
    response_model=JobOut,
    summary="Remix a finished video: the same video, re-made with a new prompt",
)
def remix_job(
    job_id: str,
    body: RemixRequest,
    request: Request,
    response: Response,
    key: GenerateKey,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, IDEMPOTENCY_HEADER] = None,
) -> JobOut:
    """202 with the new job (kind `remix`), at the parent's size and length; 404 / 409 as for extend."""
    return _submit_from_parent(
        job_id,
        "remix",
        body,
        lambda parent: modes.resolve_remix(body, parent, settings),
        request,
        response,
        key,
        session,
        settings,
        idempotency_key,
    )


def _submit_from_parent(
    job_id: str,
    action: str,
    body: BaseModel,
    resolve_from: Callable[[Job], Parameters],
    request: Request,
    response: Response,
    key: ApiKey,
    session: Session,
    settings: Settings,
    idempotency_key: str | None,
) -> JobOut:
    """Submit a job made from the caller's finished job `job_id` (`POST /jobs/{id}/<action>`)."""
    idempotency = parse_header(
        idempotency_key,
        endpoint=f"POST /jobs/{job_id}/{action}",
        body=body.model_dump(mode="json", exclude_unset=True),
    )

    def prepare() -> Parameters:
        return resolve_from(modes.find_parent(session, key, job_id, param="id"))

    submitted = service.submit_prepared(session, key, prepare, idempotency)
    return _accepted(request, response, settings, session, submitted)


@router.get("/jobs", response_model=JobList, summary="List your jobs, newest first")
def list_jobs(
    request: Request,
    key: ReadKey,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 20,
    after: Annotated[str | None, Query(description="The `next_cursor` of the previous page.")] = None,
    status: Annotated[JobStatus | None, Query()] = None,
) -> JobList:
    jobs, has_more = service.list_jobs(session, key, limit=limit, after=after, status=status)
    return JobList(
        data=[_present(request, settings, session, job) for job in jobs],
        has_more=has_more,
        next_cursor=jobs[-1].id if has_more else None,
    )


@router.get("/jobs/{job_id}", response_model=JobOut, summary="Poll a job")
def get_job(
    job_id: str, request: Request, key: ReadKey, session: SessionDep, settings: SettingsDep
) -> JobOut:
    return _present(request, settings, session, service.get_job(session, key, job_id))


@router.post("/jobs/{job_id}/cancel", response_model=JobOut, summary="Cancel a queued or running job")
def cancel_job(
    job_id: str, request: Request, key: GenerateKey, session: SessionDep, settings: SettingsDep
) -> JobOut:
    """A queued job is canceled at once; a running one stops at its next denoising step. 409 if finished."""
    job = cancel.cancel(session, key, job_id, lease_s=settings.job_lease_s)
    return _present(request, settings, session, job)


@router.get(
    "/jobs/{job_id}/events",
    summary="Stream the job's status and progress (Server-Sent Events)",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
def job_events(
    job_id: str, request: Request, key: ReadKey, session: SessionDep, settings: SettingsDep
) -> EventSourceResponse:
    """The job now, then each change of status or progress; the last event is the finished job."""
    service.get_job(session, key, job_id)  # a 404 before the stream starts
    events = stream.job_events(
        session,
        key,
        job_id,
        base_url=service.public_base_url(settings, str(request.base_url)),
        settings=settings,
    )
    return EventSourceResponse(events, ping=stream.PING_S)


def download(job: Job, object_key: str | None, media_type: str, filename: str) -> Response:
    """The stored object: a redirect to a presigned URL, or the file; 409 until the job succeeded."""
    if job.status != JobStatus.SUCCEEDED or object_key is None:
        raise Conflict(
            f"Job {job.id} has no output yet (status: {job.status}).", param="id", code="output_not_ready"
        )
    storage = get_storage()
    url = storage.presigned_url(object_key, filename=filename)
    if url is not None:
        return RedirectResponse(url, status_code=302)
    path = storage.local_path(object_key)
    if path is None:
        raise NotFound(
            f"The output of job {job.id} is missing from storage.", param="id", code="output_missing"
        )
    return FileResponse(path, media_type=media_type, filename=filename)


@router.get(
    "/jobs/{job_id}/video",
    summary="Download the MP4",
    responses={302: {"description": "Redirect to a presigned S3 URL"}, 200: {"content": {"video/mp4": {}}}},
)
def get_video(job_id: str, key: ReadKey, session: SessionDep) -> Response:
    job = service.get_job(session, key, job_id)
    return download(job, job.video_key, "video/mp4", f"{job.id}.mp4")


@router.get(
    "/jobs/{job_id}/thumbnail",
    summary="Download the JPEG thumbnail",
    responses={302: {"description": "Redirect to a presigned S3 URL"}, 200: {"content": {"image/jpeg": {}}}},
)
def get_thumbnail(job_id: str, key: ReadKey, session: SessionDep) -> Response:
    job = service.get_job(session, key, job_id)
    return download(job, job.thumbnail_key, "image/jpeg", f"{job.id}.jpg")
