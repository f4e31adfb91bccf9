"""Jobs as the API sees them: submit, read, list, and present."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.api_keys.models import ApiKey
from app.config import Settings, get_settings
from app.db import utcnow
from app.errors import Conflict, InvalidRequest, NotFound, ServiceUnavailable
from app.inputs import service as inputs
from app.jobs.eta import eta_seconds, queue_estimate, queued_ahead
from app.jobs.idempotency import HEADER, IdempotentRequest, find_replay, release_key, reserve_key
from app.jobs.live import ProgressSnapshot, get_progress_channel
from app.jobs.models import Job, watermark_job_hash
from app.jobs.parameters import Parameters
from app.jobs.schemas import JobError, JobInput, JobOut, JobOutput, JobParameters
from app.jobs.states import JobStatus, sources_of
from app.limits.service import admit_job
from app.moderation import service as moderation
from app.queue import QueueUnavailable, enqueue_generation
from app.webhooks import events

MAX_PAGE = 100


_RANDOM_BITS = 80
_last_id: tuple[int, int] = (0, 0)
_id_lock = threading.Lock()


def new_job_id() -> str:
    """`video_` + 48-bit milliseconds + 80 random bits, hex: unique and ordered by creation time.

    Monotonic within a process (as ULIDs are): an id made in the same millisecond as the last one is
    that one's random part plus one, so a process's jobs list in the order it made them.
    """
    global _last_id
    with _id_lock:
        ms = int(time.time() * 1000)
        last_ms, last_random = _last_id
        if ms <= last_ms and last_random + 1 < 2**_RANDOM_BITS:
            ms, random_part = last_ms, last_random + 1
        else:
            random_part = int.from_bytes(os.urandom(_RANDOM_BITS // 8), "big")
        _last_id = (ms, random_part)
    return f"video_{ms:012x}{random_part:020x}"


@dataclass(frozen=True, slots=True)
class Submission:
    """A submitted job; `replayed` when an earlier request with the same Idempotency-Key made it."""

    job: Job
    replayed: bool = False
    # A new job's queue position and ETA, counted inside its submit's transaction (no second transaction
    # to present the 202); None for a replay.
    queue_position: int | None = None
    eta_seconds: int | None = None


# Built once, Core on the table: the submit's INSERT skips the ORM's unit of work.
_INSERT_JOB = insert(cast(Table, Job.__table__))


def _new_job_values(job_id: str, api_key_id: str, params: Parameters) -> dict[str, Any]:
    """Every column a new queued job sets, for its INSERT and for the copy the 202 presents.

    The columns left out are NULL (or the server default, `audio`, which the parameters always set).
    """
    now = utcnow()
    values: dict[str, Any] = {f.name: getattr(params, f.name) for f in fields(params)}
    values.update(
        id=job_id,
        api_key_id=api_key_id,
        status=JobStatus.QUEUED.value,
        phase="queued",
        progress=0,
        step=0,
        total_steps=0,
        attempts=0,
        created_at=now,
        updated_at=now,
        watermark_job_hash=watermark_job_hash(job_id),
    )
    return values


def submit_once(
    session: Session, key: ApiKey, params: Parameters, idempotency: IdempotentRequest | None
) -> Submission:
    """`submit`; with an Idempotency-Key, a repeat of an earlier request gets that request's job."""
    if idempotency is None:
        return submit(session, key, params)
    earlier = find_replay(session, key.id, idempotency)
    if earlier is not None:
        return Submission(earlier, replayed=True)
    try:
        return submit(session, key, params, idempotency=idempotency)
    except IntegrityError as exc:
        session.rollback()
        # A concurrent request with the same key committed first: answer with its job.
        earlier = find_replay(session, key.id, idempotency)
        if earlier is None:
            raise Conflict(
                f"A request with this {HEADER} is being processed; retry it.",
                param=HEADER,
                code="idempotency_key_in_use",
            ) from exc
        return Submission(earlier, replayed=True)


def submit(
    session: Session, key: ApiKey, params: Parameters, *, idempotency: IdempotentRequest | None = None
) -> Submission:
    """Write the job row, commit, then enqueue; a broker that refuses fails the job and answers 503.

    With `idempotency` the key's row commits with the job; a concurrent duplicate raises IntegrityError.
    """
    # 400 moderation_blocked (audited) before anything is written; flagged prompts go on, recorded.
    texts = {"prompt": params.prompt, "negative_prompt": params.negative_prompt}
    if params.audio_prompt:
        texts["audio_prompt"] = params.audio_prompt  # screened by the prompt's rules
    flagged = moderation.screen(session, key, texts, get_settings())
    values = _new_job_values(new_job_id(), key.id, params)
    job = Job(**values)  # a transient copy of the row, for the 202
    # Counted before the key's row is locked, in this transaction: the 202 needs no second one.
    position, eta = queue_estimate(session, job)
    admit_job(session, key, params.duration_s, get_settings())  # 429 over a limit; locks the key till commit
    session.connection().execute(_INSERT_JOB, values)
    moderation.record(session, key, flagged, job_id=job.id)
    if idempotency is not None:
        reserve_key(session, key.id, idempotency, job.id)
    session.commit()
    try:
        enqueue_generation(job.id, job.model)  # the queue of the workers that hold its model
    except QueueUnavailable as exc:
        if idempotency is not None:
            release_key(session, key.id, idempotency.key)  # the retry this 503 invites makes a new job
        mark_failed(session, job.id, code="queue_unavailable", message=f"The job queue is unavailable: {exc}")
        raise ServiceUnavailable(
            "The job queue is unavailable; the job was not queued. Retry shortly.", code="queue_unavailable"
        ) from exc
    return Submission(job, queue_position=position, eta_seconds=eta)


def submit_prepared(
    session: Session,
    key: ApiKey,
    prepare: Callable[[], Parameters],
    idempotency: IdempotentRequest | None,
) -> Submission:
    """`submit_once` for requests whose parameters cost time to prepare (an input to download, decode and
    store; a parent job to look up): a replay is answered before `prepare` runs, and a stored input that
    no job ends up using (the submit was refused, or a concurrent duplicate won) is deleted again."""
    if idempotency is not None:
        earlier = find_replay(session, key.id, idempotency)
        if earlier is not None:
            return Submission(earlier, replayed=True)
    session.commit()  # hold no transaction (nor a pooled connection) while inputs download and decode
    params = prepare()
    try:
        submitted = submit_once(session, key, params, idempotency)
    except BaseException:
        if params.input_key:
            inputs.discard(params.input_key)
        raise
    if submitted.replayed and params.input_key:
        inputs.discard(params.input_key)
    return submitted


def mark_failed(session: Session, job_id: str, *, code: str, message: str) -> bool:
    """Fail a job that is not finished yet (compare-and-set on its status)."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(sources_of(JobStatus.FAILED)))
        .values(status=JobStatus.FAILED, error_code=code, error_message=message, finished_at=utcnow())
    )
    failed = bool(result.rowcount)  # type: ignore[attr-defined]
    if failed:
        events.record_job_event(session, job_id, "video.failed")
    session.commit()
    return failed


def get_job(session: Session, key: ApiKey, job_id: str) -> Job:
    """The caller's job; another key's job does not exist for this caller (404, not 403)."""
    job = session.scalar(select(Job).where(Job.id == job_id, Job.api_key_id == key.id))
    if job is None:
        raise NotFound(f"No job with id {job_id!r}.", param="id")
    return job


def list_jobs(
    session: Session,
    key: ApiKey,
    *,
    limit: int,
    after: str | None,
    status: JobStatus | None,
    oldest_first: bool = False,
) -> tuple[list[Job], bool]:
    """The caller's jobs, newest (or oldest) first, `limit` after the cursor; and whether more follow."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}.", param="limit")
    query = select(Job).where(Job.api_key_id == key.id)
    if status is not None:
        query = query.where(Job.status == status)
    if after:
        query = query.where(Job.id > after if oldest_first else Job.id < after)
    order = Job.id.asc() if oldest_first else Job.id.desc()
    rows = list(session.scalars(query.order_by(order).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def queue_position(session: Session, job: Job) -> int | None:
    """How many queued jobs for the same model were submitted before this one."""
    if job.status != JobStatus.QUEUED:
        return None
    return queued_ahead(session, job.model, job.id, work=False).jobs


def present(session: Session, job: Job, *, base_url: str) -> JobOut:
    """The job as the API shows it now: its row, the freshest live snapshot, queue position and ETA."""
    channel = get_progress_channel() if job.status == JobStatus.IN_PROGRESS else None
    live = channel.read(job.id) if channel is not None else None
    return to_out(
        job,
        base_url=base_url,
        position=queue_position(session, job),
        live=live,
        eta=eta_seconds(session, job, live),
    )


def present_submission(session: Session, submitted: Submission, *, base_url: str) -> JobOut:
    """A submit's answer: a new job as its submit counted it (no database work); a replay as it is now."""
    if submitted.replayed:
        return present(session, submitted.job, base_url=base_url)
    return to_out(
        submitted.job, base_url=base_url, position=submitted.queue_position, eta=submitted.eta_seconds
    )


def to_out(
    job: Job,
    *,
    base_url: str,
    position: int | None,
    live: ProgressSnapshot | None = None,
    eta: int | None = None,
) -> JobOut:
    """The public view of a job; a fresher live snapshot from Redis overrides the row's progress."""
    phase, progress, step, total = job.phase, job.progress, job.step, job.total_steps
    if live is not None and job.status == JobStatus.IN_PROGRESS and live.status == JobStatus.IN_PROGRESS:
        phase, progress, step, total = live.phase, live.progress, live.step, live.total_steps
    output = None
    if job.status == JobStatus.SUCCEEDED and job.video_key:
        output = JobOutput(
            video_url=f"{base_url}/jobs/{job.id}/video",
            thumbnail_url=f"{base_url}/jobs/{job.id}/thumbnail",
            width=job.width,
            height=job.height,
            fps=job.fps,
            frames=job.output_frames or 0,
            duration=job.output_duration_s or 0.0,
            bytes=job.output_bytes or 0,
            sha256=job.output_sha256 or "",
            audio=job.output_audio_codec is not None,
            audio_codec=job.output_audio_codec,
            audio_sample_rate=job.output_audio_sample_rate,
            audio_channels=job.output_audio_channels,
        )
    error = JobError(code=job.error_code, message=job.error_message or "") if job.error_code else None
    return JobOut(
        id=job.id,
        status=job.status,  # type: ignore[arg-type]
        phase=phase,
        progress=progress,
        step=step,
        total_steps=total,
        queue_position=position,
        eta_seconds=eta,
        model=job.model,
        kind=job.kind,  # type: ignore[arg-type]
        parent_id=job.parent_id,
        input=JobInput(type=job.input_type) if job.input_type else None,  # type: ignore[arg-type]
        strength=job.strength,
        parameters=JobParameters(
            prompt=job.prompt,
            negative_prompt=job.negative_prompt,
            duration=job.duration_s,
            width=job.width,
            height=job.height,
            fps=job.fps,
            num_frames=job.num_frames,
            seed=job.seed,
            num_inference_steps=job.num_inference_steps,
            guidance_scale=job.guidance_scale,
            audio=job.audio,
            audio_prompt=job.audio_prompt,
        ),
        attempts=job.attempts,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        cancel_requested_at=job.cancel_requested_at,
        error=error,
        output=output,
    )


def public_base_url(settings: Settings, request_base_url: str) -> str:
    """KINEMA_API_BASE_URL when set (behind a proxy), else the URL the caller used."""
    return (settings.api_base_url or request_base_url).rstrip("/")
