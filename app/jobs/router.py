"""HTTP endpoints for jobs: submit, poll, list, download."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from app.deps import SessionDep, SettingsDep
from app.errors import Conflict, NotFound
from app.jobs import service
from app.jobs.live import get_progress_channel
from app.jobs.models import Job
from app.jobs.parameters import resolve
from app.jobs.schemas import GenerateRequest, JobList, JobOut
from app.jobs.states import JobStatus
from app.security import CurrentKey
from app.storage import get_storage

router = APIRouter(tags=["jobs"])


def _present(request: Request, settings: SettingsDep, session: SessionDep, job: Job) -> JobOut:
    channel = get_progress_channel() if job.status == JobStatus.IN_PROGRESS else None
    return service.to_out(
        job,
        base_url=service.public_base_url(settings, str(request.base_url)),
        position=service.queue_position(session, job),
        live=channel.read(job.id) if channel is not None else None,
    )


@router.post("/generate", status_code=202, response_model=JobOut, summary="Submit a text-to-video job")
def generate(
    body: GenerateRequest,
    request: Request,
    response: Response,
    key: CurrentKey,
    session: SessionDep,
    settings: SettingsDep,
) -> JobOut:
    """Queue a generation. Answers 202 with the job and a `Location` to poll."""
    job = service.submit(session, key, resolve(body, settings))
    response.headers["Location"] = f"/jobs/{job.id}"
    return _present(request, settings, session, job)


@router.get("/jobs", response_model=JobList, summary="List your jobs, newest first")
def list_jobs(
    request: Request,
    key: CurrentKey,
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
    job_id: str, request: Request, key: CurrentKey, session: SessionDep, settings: SettingsDep
) -> JobOut:
    return _present(request, settings, session, service.get_job(session, key, job_id))


def _download(job: Job, object_key: str | None, media_type: str, filename: str) -> Response:
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
def get_video(job_id: str, key: CurrentKey, session: SessionDep) -> Response:
    job = service.get_job(session, key, job_id)
    return _download(job, job.video_key, "video/mp4", f"{job.id}.mp4")


@router.get(
    "/jobs/{job_id}/thumbnail",
    summary="Download the JPEG thumbnail",
    responses={302: {"description": "Redirect to a presigned S3 URL"}, 200: {"content": {"image/jpeg": {}}}},
)
def get_thumbnail(job_id: str, key: CurrentKey, session: SessionDep) -> Response:
    job = service.get_job(session, key, job_id)
    return _download(job, job.thumbnail_key, "image/jpeg", f"{job.id}.jpg")
