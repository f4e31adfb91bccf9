"""One job, two views: the `/jobs` JobOut mapped onto the OpenAI SDK's `Video`."""

from __future__ import annotations

from datetime import UTC, datetime

from app.jobs.schemas import JobOut
from app.openai_compat.schemas import Video, VideoError, VideoStatus

# The SDK's poll loop knows only these four statuses (it raises on any other), so canceled is a failure.
STATUS: dict[str, VideoStatus] = {
    "queued": "queued",
    "in_progress": "in_progress",
    "succeeded": "completed",
    "failed": "failed",
    "canceled": "failed",
}
CANCELED_ERROR = VideoError(code="canceled", message="The video was canceled before it finished.")

# How long the SDK's `poll` waits between retrieves (the `openai-poll-after-ms` header), in ms.
POLL_AFTER_MIN_MS = 250
POLL_AFTER_MAX_MS = 5000
POLL_AFTER_UNKNOWN_MS = 1000


def unix_seconds(moment: datetime | None) -> int | None:
    """Whole Unix seconds; a naive datetime (SQLite) is UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def format_seconds(duration_s: float) -> str:
    """The SDK's `seconds` string: "4", or "2.5" for a /generate job of fractional length."""
    return f"{duration_s:g}"


def to_video(job: JobOut) -> Video:
    """The job as the SDK's `Video`."""
    status = STATUS[job.status]
    error = VideoError(code=job.error.code, message=job.error.message) if job.error is not None else None
    if job.status == "canceled" and error is None:
        error = CANCELED_ERROR
    finished = status in ("completed", "failed")
    return Video(
        id=job.id,
        model=job.model,
        status=status,
        progress=100 if status == "completed" else job.progress,
        created_at=unix_seconds(job.created_at) or 0,
        completed_at=unix_seconds(job.finished_at) if finished else None,
        prompt=job.parameters.prompt,
        size=f"{job.parameters.width}x{job.parameters.height}",
        seconds=format_seconds(job.parameters.duration),
        remixed_from_video_id=job.parent_id if job.kind == "remix" else None,
        error=error,
    )


def poll_after_ms(job: JobOut) -> int | None:
    """How long a poller should wait before asking again (None once finished): a quarter of the ETA."""
    if job.status not in ("queued", "in_progress"):
        return None
    if job.eta_seconds is None:
        return POLL_AFTER_UNKNOWN_MS
    return max(POLL_AFTER_MIN_MS, min(POLL_AFTER_MAX_MS, job.eta_seconds * 250))
