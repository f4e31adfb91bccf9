"""What a run starts from: an input image or video, or a parent job's MP4, fetched from storage and decoded.

Every failure to fetch or decode one (gone from storage, corrupt, not an image or a video) is
`InputUnreadable`, which fails the job with the code `input_unreadable`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.storage import Storage
from model.conditioning import fit_frame


class InputUnreadable(Exception):
    """An input or parent video the run needs is missing or cannot be decoded."""


def fetch(storage: Storage, key: str, directory: Path, *, what: str) -> Path:
    """Copy the object at `key` into `directory` (keeping its extension); `what` names it in errors.

    Raises `InputUnreadable` when there is no such object; `StorageError` when storage cannot answer.
    """
    if not storage.exists(key):
        raise InputUnreadable(f"The {what} ({key}) is no longer in storage.")
    path = directory / f"{what.replace(' ', '-')}{Path(key).suffix.lower()}"
    storage.get_file(key, path)
    return path


def read_image(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB, turned upright by its EXIF orientation."""
    try:
        with Image.open(path) as image:
            upright = ImageOps.exif_transpose(image)
            return np.asarray(upright.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise InputUnreadable(f"The input image cannot be read: {exc}") from exc


def video_frames(path: Path, *, what: str, fps: int | None = None) -> Iterator[np.ndarray]:
    """Decode a video's frames as (H, W, 3) uint8 RGB, one at a time.

    With `fps`, frames are resampled to that rate by their timestamps: a frame is repeated to fill a gap
    and dropped where the video has more frames than the rate. Raises `InputUnreadable` (also midway).
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputUnreadable(f"The {what} has no video stream.")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            first_time: float | None = None
            made = 0
            last: np.ndarray | None = None
            for frame in container.decode(stream):
                image = frame.to_ndarray(format="rgb24")
                if fps is None or frame.time is None:
                    yield image
                    continue
                first_time = frame.time if first_time is None else first_time
                # The output frame this one falls on; output frames before it repeat the previous one.
                index = math.floor((frame.time - first_time) * fps + 0.5)
                while last is not None and made < index:
                    yield last
                    made += 1
                if made <= index:
                    yield image
                    made += 1
                last = image
    except av.error.FFmpegError as exc:
        raise InputUnreadable(f"The {what} cannot be decoded: {exc}") from exc


def decode_to_file(
    frames: Iterator[np.ndarray], path: Path, *, width: int, height: int, limit: int, what: str
) -> np.ndarray:
    """Up to `limit` frames fitted to `width`x`height`, written to `path` and mapped back (T, H, W, 3).

    A long source is never all in memory: the array is a read-only `numpy.memmap` of the file.
    """
    count = 0
    try:
        with path.open("wb") as out:
            for frame in frames:
                if count == limit:
                    break
                out.write(fit_frame(frame, width, height).tobytes())
                count += 1
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()  # a decoder stopped early closes its file now, not at garbage collection
    if count == 0:
        raise InputUnreadable(f"The {what} has no frames.")
    return np.memmap(path, dtype=np.uint8, mode="r", shape=(count, height, width, 3))
