"""The `jobs` table: the truth about every generation."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, false, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, utcnow
from app.jobs.states import JobStatus
from model.invisible_watermark import short_hash


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_api_key_id_id", "api_key_id", "id"),
        Index("ix_jobs_status_id", "status", "id"),
        # Limits: a key's running jobs, and its jobs this month by status (migration 0004).
        Index("ix_jobs_api_key_id_status_created_at", "api_key_id", "status", "created_at"),
        # Queue positions: only queued jobs, so a count ahead reads index entries alone (migration 0008).
        Index(
            "ix_jobs_queued_model_id",
            "model",
            "id",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
    )

    # `video_<32 hex>`, time-ordered, so ordering by id is ordering by creation.
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    kind: Mapped[str] = mapped_column(String(16), default="text")
    parent_id: Mapped[str | None] = mapped_column(String(40), default=None)
    # An uploaded or fetched input, `inputs/<api_key_id>/<input id>.<ext>`, and its type (migration 0006).
    input_key: Mapped[str | None] = mapped_column(String(500), default=None)
    input_type: Mapped[str | None] = mapped_column(String(16), default=None)  # "image" or "video"
    # Edit and remix: how much of the source is re-noised (0 < strength <= 1).
    strength: Mapped[float | None] = mapped_column(default=None)

    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    phase: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[int] = mapped_column(default=0)
    step: Mapped[int] = mapped_column(default=0)
    total_steps: Mapped[int] = mapped_column(default=0)

    model: Mapped[str] = mapped_column(String(500))
    prompt: Mapped[str] = mapped_column(Text)
    negative_prompt: Mapped[str] = mapped_column(Text, default="")
    duration_s: Mapped[float]
    width: Mapped[int]
    height: Mapped[int]
    fps: Mapped[int]
    num_frames: Mapped[int]
    seed: Mapped[int] = mapped_column(BigInteger)
    num_inference_steps: Mapped[int]
    guidance_scale: Mapped[float]
    # A soundtrack made from `audio_prompt`, else from the prompt (migration 0009).
    audio: Mapped[bool] = mapped_column(default=False, server_default=false())
    audio_prompt: Mapped[str | None] = mapped_column(Text, default=None)

    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)

    video_key: Mapped[str | None] = mapped_column(String(500), default=None)
    thumbnail_key: Mapped[str | None] = mapped_column(String(500), default=None)
    output_frames: Mapped[int | None] = mapped_column(default=None)
    output_duration_s: Mapped[float | None] = mapped_column(default=None)
    output_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    output_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    # The MP4's audio stream, when it has one: codec ("aac"), sample rate and channels (migration 0009).
    output_audio_codec: Mapped[str | None] = mapped_column(String(16), default=None)
    output_audio_sample_rate: Mapped[int | None] = mapped_column(default=None)
    output_audio_channels: Mapped[int | None] = mapped_column(default=None)

    # Which run owns the job: writes from any other run are refused (compare-and-set on this token).
    run_token: Mapped[str | None] = mapped_column(String(40), default=None)
    attempts: Mapped[int] = mapped_column(default=0)
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    # Set when a cancel is asked for a running job: its worker stops at the next denoising step.
    cancel_requested_at: Mapped[datetime | None] = mapped_column(default=None)
    # The running worker's forecast of its finish, from its own step times (`eta_seconds`).
    expected_finish_at: Mapped[datetime | None] = mapped_column(default=None)
    # A per-request webhook: receives the job's terminal events (migration 0002_webhooks).
    webhook_url: Mapped[str | None] = mapped_column(Text, default=None)
    # The invisible watermark's 32-bit hash of the id, set on insert: verify finds the job a watermark
    # names with one index lookup (migration 0007).
    watermark_job_hash: Mapped[int | None] = mapped_column(
        BigInteger,
        default=lambda context: watermark_job_hash(context.get_current_parameters()["id"]),
        index=True,
    )

    @property
    def spritesheet_key(self) -> str | None:
        """Where the worker stored the spritesheet: beside the video (derived, so no column)."""
        return spritesheet_key_for(self.video_key) if self.video_key else None


def watermark_job_hash(job_id: str) -> int:
    """The job field of the watermark payload naming `job_id`."""
    return short_hash(job_id, 32)


def spritesheet_key_for(video_key: str) -> str:
    """The storage key of a video's spritesheet (a JPEG grid of its frames), next to the MP4."""
    return video_key.removesuffix(".mp4") + ".sprites.jpg"


class IdempotencyKey(Base):
    """An `Idempotency-Key` a caller sent with a submit, and the job it made."""

    __tablename__ = "idempotency_keys"

    # The primary key is the unique constraint that makes concurrent duplicates create one job.
    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # SHA-256 of the endpoint and the canonical request body: a different body under the same key is refused.
    request_hash: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class ModelTiming(Base):
    """How fast a model runs on this deployment's workers: moving averages, per megapixel-frame."""

    __tablename__ = "model_timings"

    model: Mapped[str] = mapped_column(String(500), primary_key=True)
    # Seconds per denoising step, and for everything after denoising (decode, encode, upload).
    step_s_per_unit: Mapped[float]
    tail_s_per_unit: Mapped[float]
    samples: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
