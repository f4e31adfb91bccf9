"""Bodies of the OpenAI-compatible API, field for field as the `openai` SDK types them (types/video*.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

VideoStatus = Literal["queued", "in_progress", "completed", "failed"]
Variant = Literal["video", "thumbnail", "spritesheet"]


class InputReference(BaseModel):
    """`input_reference` given by reference (`input_reference[image_url]` in a form) rather than uploaded."""

    model_config = ConfigDict(extra="forbid")

    image_url: str | None = Field(
        default=None, description="An http(s) URL or a base64 data URL of an image."
    )
    file_id: str | None = Field(default=None, description="Not supported: Kinema has no Files API.")


class VideoReference(BaseModel):
    """A finished video to start from (`video[id]` in a form)."""

    model_config = ConfigDict(extra="forbid")

    id: str


class CreateVideoRequest(BaseModel):
    """POST /v1/videos, from a multipart form (what the SDK sends) or a JSON object.

    `input_reference` may also be a file part (an image: image to video; a video: an edit of it).
    """

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
    input_reference: InputReference | None = None
    strength: float | None = Field(
        default=None, gt=0, le=1, description="Kinema extension, with a video input: how much is re-noised."
    )
    audio: bool | None = Field(
        default=None, description="Kinema extension: add a soundtrack as long as the video (AAC in the MP4)."
    )
    audio_prompt: str | None = Field(
        default=None, description="Kinema extension: what the soundtrack sounds like; implies `audio`."
    )


class RemixVideoRequest(BaseModel):
    """POST /v1/videos/{id}/remix."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="The new prompt.")
    strength: float | None = Field(
        default=None, gt=0, le=1, description="Kinema extension: how much of the video is re-noised (0.6)."
    )
    webhook_url: str | None = Field(default=None, description="Kinema extension, as on create.")


class EditVideoRequest(BaseModel):
    """POST /v1/videos/edits: a finished video (`video[id]`) or an uploaded one (file part `video`)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="How to change the video.")
    video: VideoReference | None = None
    strength: float | None = Field(
        default=None, gt=0, le=1, description="Kinema extension: how much of the video is re-noised (0.6)."
    )
    webhook_url: str | None = Field(default=None, description="Kinema extension, as on create.")


class ExtendVideoRequest(BaseModel):
    """POST /v1/videos/extensions: continue a finished video (`video[id]`) by `seconds`."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="What happens next.")
    seconds: str | int = Field(description="Seconds to add; the whole video within the limit (60 s).")
    video: VideoReference | None = None
    webhook_url: str | None = Field(default=None, description="Kinema extension, as on create.")


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
    modes: list[str] = Field(description="Job kinds it makes: `text`, `image`, `extend`, `edit`, `remix`.")
    default_size: str
    max_width: int
    max_height: int
    max_pixels: int
    size_multiple: int
    default_seconds: str
    max_seconds: int
    fps: int
    pipeline: str = Field(default="", description="The diffusers pipeline class.")
    frame_step: int = Field(default=1, description="Frame counts it makes: frame_step * k + 1.")
    max_frames_per_pass: int = 0
    max_frames_total: int = Field(
        default=0, description="The most frames one request makes (passes chained)."
    )
    default_steps: int = 0
    default_guidance: float = 0.0
    default: bool = Field(default=False, description="Requests that name no model get this one.")


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
