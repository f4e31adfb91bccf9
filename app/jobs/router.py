"""HTTP endpoints for jobs: submit, poll, list, cancel, stream events, download."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from sse_starlette import EventSourceResponse

from app.deps import SessionDep, SettingsDep
from app.errors import Conflict, NotFound
from app.jobs import cancel, service, stream
from app.jobs.idempotency import parse_header
from app.jobs.models import Job
from app.jobs.parameters import resolve
from app.jobs.schemas import GenerateRequest, JobList, JobOut
from app.jobs.states import JobStatus
from app.security import GenerateKey, ReadKey
from app.storage import get_storage

router = APIRouter(tags=["jobs"])


def _present(request: Request, settings: SettingsDep, session: SessionDep, job: Job) -> JobOut:
    return service.present(session, job, base_url=service.public_base_url(settings, str(request.base_url)))


@router.post("/generate", status_code=202, response_model=JobOut, summary="Submit a text-to-video job")
def generate(
    body: GenerateRequest,
    request: Request,
    response: Response,
    key: GenerateKey,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None,
        Header(description="Retry-safe submits: the same key and body return the first job (for 24 h)."),
    ] = None,
) -> JobOut:
    """Queue a generation. Answers 202 with the job and a `Location` to poll."""
    idempotency = parse_header(
        idempotency_key, endpoint="POST /generate", body=body.model_dump(mode="json", exclude_unset=True)
    )
    submitted = service.submit_once(session, key, resolve(body, settings), idempotency)
    job = submitted.job
    response.headers["Location"] = f"/jobs/{job.id}"
    if submitted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return _present(request, settings, session, job)


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
