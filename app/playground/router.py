"""The playground's page and assets at `/` and `/playground`, and its same-origin media endpoint.

The page is plain HTML, CSS and JavaScript shipped in the package (`app/playground/static/`), so an
offline deployment serves it as it is. Its Content-Security-Policy allows only this origin: the page
fetches everything from the gateway with the key in the `Authorization` header, and shows videos and
thumbnails as blobs. `GET /jobs/{id}/video` answers S3 deployments with a redirect to another origin,
which that policy (and CORS) would block, so the page reads job media through
`GET /playground/media/{id}/{variant}`, which streams the stored object itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from app.deps import SessionDep
from app.errors import Conflict, NotFound
from app.jobs import service
from app.jobs.states import JobStatus
from app.security import ReadKey
from app.storage import S3Storage, StorageError, get_storage

router = APIRouter(tags=["playground"])

STATIC = Path(__file__).with_name("static")
# The only files the page loads, with their media types (no directory listing, nothing else served).
ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    # A new deployment's page should not be served from a stale cache.
    "Cache-Control": "no-cache",
}
_CHUNK = 1024 * 1024


@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    return RedirectResponse("/playground", status_code=307)


@router.get("/playground", include_in_schema=False)
def page() -> FileResponse:
    """The playground page."""
    return FileResponse(
        STATIC / "index.html", media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS
    )


@router.get("/playground/{name}", include_in_schema=False)
def asset(name: str) -> FileResponse:
    """The page's script and stylesheet."""
    if name not in ASSETS:
        raise NotFound(f"No playground file {name!r}.", code="not_found")
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers=SECURITY_HEADERS)


def _stream_s3(storage: S3Storage, key: str) -> Iterator[bytes]:
    try:
        body = storage.client.get_object(Bucket=storage.bucket, Key=key)["Body"]
    except Exception as exc:  # boto3's client and transport errors alike
        raise StorageError(f"download of {key} failed: {exc}") from exc
    try:
        yield from body.iter_chunks(_CHUNK)
    finally:
        body.close()


@router.get(
    "/playground/media/{job_id}/{variant}",
    summary="A job's video or thumbnail, streamed from this origin",
    tags=["jobs"],
    responses={200: {"content": {"video/mp4": {}, "image/jpeg": {}}}},
)
def media(job_id: str, variant: Literal["video", "thumbnail"], key: ReadKey, session: SessionDep) -> Response:
    """The bytes of `GET /jobs/{id}/video` or `/thumbnail`, never a redirect (for pages with a strict CSP)."""
    job = service.get_job(session, key, job_id)
    object_key = job.video_key if variant == "video" else job.thumbnail_key
    if job.status != JobStatus.SUCCEEDED or object_key is None:
        raise Conflict(
            f"Job {job.id} has no output yet (status: {job.status}).", param="id", code="output_not_ready"
        )
    media_type = "video/mp4" if variant == "video" else "image/jpeg"
    headers = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}
    storage = get_storage()
    if isinstance(storage, S3Storage):
        # Check the object first, so a missing one is a 404 rather than a broken stream.
        if not storage.exists(object_key):
            raise NotFound(f"The output of job {job.id} is missing from storage.", code="output_missing")
        return StreamingResponse(_stream_s3(storage, object_key), media_type=media_type, headers=headers)
    path = storage.local_path(object_key)
    if path is None:
        raise NotFound(f"The output of job {job.id} is missing from storage.", code="output_missing")
    return FileResponse(path, media_type=media_type, headers=headers)
