"""Request and response bodies of the jobs API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

AspectRatio = Literal["16:9", "9:16", "1:1", "4:3", "3:4"]


class GenerationOptions(BaseModel):
    """The fields every way of making a video shares (generate, extend, remix)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str = Field(description="What the video shows (1 to KINEMA_MAX_PROMPT_LENGTH characters).")
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1, description="Random seed; random if omitted.")
    num_inference_steps: int | None = Field(default=None, ge=1, description="Denoising steps.")
    guidance_scale: float | None = Field(default=None, ge=0, le=30, description="Classifier-free guidance.")
    negative_prompt: str | None = Field(default=None, description="What the video should not show.")
    webhook_url: str | None = Field(
        default=None,
        description="Receives this job's `video.completed`, `video.failed` and `video.canceled` events, "
        "signed with the secret from GET /v1/webhooks/default/secret.",
    )
    audio: bool = Field(
        default=False,
        description="Add a soundtrack as long as the video (AAC in the MP4), made by the deployment's audio "
        "model (KINEMA_AUDIO_MODEL) from `audio_prompt`, else from `prompt`.",
    )
    audio_prompt: str | None = Field(
        default=None,
        description="What the soundtrack sounds like (1 to KINEMA_MAX_PROMPT_LENGTH characters); implies "
        "`audio`.",
    )


class GenerateRequest(GenerationOptions):
    """POST /generate. Limits that depend on the deployment or the model are checked by the service.

    As JSON, or as a multipart form with the same fields and a file part `image` or `video`.
    """

    duration: float = Field(default=4, gt=0, description="Length in seconds.")
    resolution: str | None = Field(
        default=None, description="`480p`, `720p`, `1080p`, or `WxH` (multiples of 8). Default: the model's."
    )
    aspect_ratio: AspectRatio | None = Field(
        default=None, description="With a preset resolution; default 16:9."
    )
    fps: int | None = Field(default=None, ge=1, description="Frames per second. Default: the model's.")
    model: str | None = Field(default=None, description="Model id; default: the deployment's model.")
    image_url: str | None = Field(
        default=None, description="Image to video: an http(s) URL of the first frame (PNG, JPEG or WebP)."
    )
    video_url: str | None = Field(
        default=None, description="Edit: an http(s) URL of the source video (MP4, MOV or WebM)."
    )
    strength: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="With a video: how much of the source is re-noised (default 0.6).",
    )


class ExtendRequest(GenerationOptions):
    """POST /jobs/{id}/extend: continue a finished video."""

    duration: float = Field(default=4, gt=0, description="Seconds to add.")


class RemixRequest(GenerationOptions):
    """POST /jobs/{id}/remix: the finished video again, with a new prompt."""

    strength: float | None = Field(
        default=None, gt=0, le=1, description="How much of the source is re-noised (default 0.6)."
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
    audio: bool = Field(default=False, description="Whether the video gets a soundtrack.")
    audio_prompt: str | None = Field(
        default=None, description="What the soundtrack was asked to sound like (null: the prompt)."
    )


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
    audio: bool = Field(default=False, description="Whether the MP4 has an audio stream.")
    audio_codec: str | None = Field(default=None, description="The audio stream's codec (`aac`).")
    audio_sample_rate: int | None = Field(default=None, description="The audio's samples per second.")
    audio_channels: int | None = Field(default=None, description="1 (mono) or 2 (stereo).")


class JobInput(BaseModel):
    """The job's uploaded or fetched input."""

    type: Literal["image", "video"]


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
    kind: Literal["text", "image", "extend", "edit", "remix"]
    parent_id: str | None = Field(default=None, description="The job this one extends, edits or remixes.")
    input: JobInput | None = Field(default=None, description="The image or video it was given, if any.")
    strength: float | None = Field(default=None, description="Edit and remix: how much was re-noised.")
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
