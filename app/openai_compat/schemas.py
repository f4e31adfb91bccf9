"""Bodies of the OpenAI-compatible API, field for field as the `openai` SDK types them (types/video*.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

VideoStatus = Literal["queued", "in_progress", "completed", "failed"]
Variant = Literal["video", "thumbnail", "spritesheet"]


class CreateVideoRequest(BaseModel):
    """POST /v1/videos, from a multipart form (what the SDK sends) or a JSON object."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="What the video shows.")
    model: str | None = Field(
        default=None, description="The served model's id; `sora-*` names mean the served model too."
    )
    seconds: str | int | None = Field(default=None, description="Whole seconds, 1 to 60 (default 4).")
    size: str | None = Field(default=None, description="`WxH`, e.g. 1280x720; default: the model's size.")
    webhook_url: str | None = Field(
        default=None, description="Kinema extension: receives this video's terminal webhook events."
    )


class VideoError(BaseModel):
    code: str
    message: str


class Video(BaseModel):
    """The SDK's `Video`: one job seen through the OpenAI shape."""

    id: str
    object: Literal["video"] = "video"
    model: str
    status: VideoStatus
    progress: int = Field(ge=0, le=100)
    created_at: int = Field(description="Unix seconds.")
    completed_at: int | None = Field(description="Unix seconds when it finished (completed or failed).")
    expires_at: int | None = Field(default=None, description="Always null: Kinema outputs do not expire.")
    prompt: str | None
    size: str = Field(description="`WxH`.")
    seconds: str
    remixed_from_video_id: str | None = None
    error: VideoError | None


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Video]
    first_id: str | None
    last_id: str | None = Field(description="Pass as `after` to get the next page.")
    has_more: bool


class VideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool = True


class ModelCapabilities(BaseModel):
    """Kinema extension of the SDK's `Model`: what a request to this model may ask for."""

    family: str
    modes: list[str] = Field(description="Generation modes served: `text` (text to video) for now.")
    default_size: str
    max_width: int
    max_height: int
    max_pixels: int
    size_multiple: int
    default_seconds: str
    max_seconds: int
    fps: int


class ModelObject(BaseModel):
    """The SDK's `Model`, with Kinema's `capabilities` (the SDK keeps extra fields)."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="Unix seconds; 0: unknown.")
    owned_by: str = "kinema"
    description: str
    capabilities: ModelCapabilities


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]
