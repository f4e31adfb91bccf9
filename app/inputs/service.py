"""Receiving an input (an upload or a URL): recognised by content, checked in full, stored under `inputs/`."""

from __future__ import annotations

import logging
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from app.config import Settings
from app.errors import InputTooLarge, InvalidRequest, UnsupportedMediaType
from app.inputs import fetch
from app.inputs.images import clean_image
from app.inputs.media import HEAD_BYTES, PNG, InputType, MediaFormat, describe, recognise
from app.inputs.videos import VideoInfo, VideoLimits, probe_video
from app.storage import StorageError, get_storage

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
_ACCEPTED = {"image": "PNG, JPEG or WebP images", "video": "MP4, MOV or WebM videos"}


@dataclass(frozen=True, slots=True)
class InputSource:
    """Where an input comes from (an uploaded file or a URL), the field that named it, what it may be."""

    param: str
    accepts: frozenset[InputType]
    file: BinaryIO | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class ReceivedInput:
    """A checked input in a local work file, ready to store; `video` describes a video's stream."""

    param: str
    format: MediaFormat
    path: Path
    width: int
    height: int
    video: VideoInfo | None = None

    @property
    def type(self) -> InputType:
        return self.format.type


def max_bytes(input_type: InputType, settings: Settings) -> int:
    """The byte limit for an input of this type."""
    return settings.input_image_max_bytes if input_type == "image" else settings.input_video_max_bytes


@contextmanager
def receive(source: InputSource, settings: Settings) -> Iterator[ReceivedInput]:
    """The input copied (or downloaded) to a work file and checked; the work files go on exit.

    Images are decoded and re-encoded as PNG (EXIF orientation applied), so what is stored is clean;
    videos are decoded to the last frame and stored as they came. Every refusal is a 4xx naming the field.
    """
    with tempfile.TemporaryDirectory(prefix="kinema-input-") as tmp:
        work = Path(tmp)
        raw = work / "raw"
        limit = max(max_bytes(accepted, settings) for accepted in source.accepts)
        if source.file is not None:
            _copy(source.file, raw, limit=limit, param=source.param)
        elif source.url is not None:
            fetch.download(source.url, raw, max_bytes=limit, settings=settings, param=source.param)
        else:
            raise InvalidRequest(f"{source.param} is missing.", param=source.param, code="missing_field")
        yield _check(raw, work, source, settings)


def _copy(file: BinaryIO, dest: Path, *, limit: int, param: str) -> None:
    file.seek(0)
    size = 0
    with dest.open("wb") as out:
        while chunk := file.read(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise InputTooLarge(f"{param} is larger than {limit} bytes.", param=param)
            out.write(chunk)


def _check(raw: Path, work: Path, source: InputSource, settings: Settings) -> ReceivedInput:
    param = source.param
    size = raw.stat().st_size
    if size == 0:
        raise InvalidRequest(f"{param} is empty.", param=param, code="input_unreadable")
    with raw.open("rb") as file:
        head = file.read(HEAD_BYTES)
    media = recognise(head)
    if media is None or media.type not in source.accepts:
        found = describe(head) if media is None else f"a {media.ext.upper()} {media.type}"
        accepted = " or ".join(_ACCEPTED[kind] for kind in sorted(source.accepts))
        raise UnsupportedMediaType(f"{param} is {found}; accepted: {accepted}.", param=param)
    limit = max_bytes(media.type, settings)
    if size > limit:
        raise InputTooLarge(f"{param} is {size} bytes; the limit for {media.type}s is {limit}.", param=param)
    if media.type == "image":
        clean = work / "clean.png"
        image = clean_image(raw, media, clean, max_pixels=settings.input_image_max_pixels, param=param)
        return ReceivedInput(param=param, format=PNG, path=clean, width=image.width, height=image.height)
    limits = VideoLimits(
        max_duration_s=settings.input_video_max_duration_s,
        max_side=settings.input_video_max_side,
        max_pixels=settings.input_video_max_pixels,
    )
    video = probe_video(raw, media, limits, param=param)
    return ReceivedInput(
        param=param, format=media, path=raw, width=video.width, height=video.height, video=video
    )


def store(received: ReceivedInput, api_key_id: str) -> str:
    """Put the checked input in storage; its key, `inputs/<api_key_id>/<input id>.<ext>`."""
    key = f"inputs/{api_key_id}/inp_{secrets.token_hex(12)}.{received.format.ext}"
    get_storage().put_file(key, received.path, received.format.mime)
    return key


def discard(key: str) -> None:
    """Delete a stored input no job uses (its submit was refused); a storage failure is only logged."""
    try:
        get_storage().delete(key)
    except StorageError as exc:
        log.warning("could not delete unused input %s: %s", key, exc)
