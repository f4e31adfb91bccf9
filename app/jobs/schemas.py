"""Request and response bodies of the jobs API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

AspectRatio = Literal["16:9", "9:16", "1:1", "4:3", "3:4"]


class GenerateRequest(BaseModel):
    """POST /generate. Limits that depend on the deployment or the model are checked by the service."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str = Field(description="What the video shows (1 to KINEMA_MAX_PROMPT_LENGTH characters).")
    duration: float = Field(default=4, gt=0, description="Length in seconds.")
    resolution: str | None = Field(
        default=None, description="`480p`, `720p`, `1080p`, or `WxH` (multiples of 8). Default: the model's."
    )
    aspect_ratio: AspectRatio | None = Field(
        default=None, description="With a preset resolution; default 16:9."
    )
    fps: int | None = Field(default=None, ge=1, description="Frames per second. Default: the model's.")
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1, description="Random seed; random if omitted.")
    num_inference_steps: int | None = Field(default=None, ge=1, description="Denoising steps.")
    guidance_scale: float | None = Field(default=None, ge=0, le=30, description="Classifier-free guidance.")
    negative_prompt: str | None = Field(default=None, description="What the video should not show.")
    model: str | None = Field(default=None, description="Model id; default: the deployment's model.")
    webhook_url: str | None = Field(
        default=None,
        description="Receives this job's `video.completed`, `video.failed` and `video.canceled` events, "
        "signed with the secret from GET /v1/webhooks/default/secret.",
    )


class JobError(BaseModel):
    code: str
    message: str


class JobParameters(BaseModel):
    """The request as it runs, every default filled in."""

    prompt: str
    negative_prompt: str
    duration: float
    width: int
    height: int
    fps: int
    num_frames: int
    seed: int
    num_inference_steps: int
    guidance_scale: float


class JobOutput(BaseModel):
    video_url: str
    thumbnail_url: str
    width: int
    height: int
    fps: int
    frames: int
    duration: float
    bytes: int
    sha256: str


class JobOut(BaseModel):
    id: str
    object: Literal["job"] = "job"
    status: Literal["queued", "in_progress", "succeeded", "failed", "canceled"]
    phase: str
    progress: int = Field(ge=0, le=100)
    step: int
    total_steps: int
    queue_position: int | None = Field(description="Jobs ahead of this one while it is queued (0: next).")
    eta_seconds: int | None = Field(
        default=None, description="Estimated seconds until it finishes (queued or running); null: unknown."
    )
    model: str
    kind: str
    parameters: JobParameters
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested_at: datetime | None = Field(
        default=None, description="When a cancel was asked for; a running job stops at its next step."
    )
    error: JobError | None
    output: JobOutput | None


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobOut]
    has_more: bool
    next_cursor: str | None = Field(description="Pass as `after` to get the next page.")
