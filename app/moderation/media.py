"""Checks of input images and video frames (image to video, edits), run in the worker before generating.

Two layers, and no more is claimed for them:
- sanity: the frames are what a decoder should have produced, (H, W, 3) uint8 of one size, at least
  16 pixels a side and within the input pixel limits. A frame that is not is refused as
  `invalid_frames`. A blank (one-colour) input is allowed: a black first frame is how a fade-in starts.
- content: only with `KINEMA_MODERATION_IMAGE_URL` set, up to `SAMPLED_FRAMES` frames spread over the
  input, as JPEGs of at most `SENT_SIDE` pixels a side, go to that image classifier (see
  `app.moderation.classifier`); any flagged frame refuses the input with the categories it names.
  Without the URL nothing judges what the pictures show.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable

import numpy as np
from PIL import Image

from app.config import Settings
from app.errors import ModerationBlocked, ServiceUnavailable
from app.moderation.classifier import ClassifierUnavailable, classify_images

log = logging.getLogger(__name__)

MIN_SIDE = 16
SAMPLED_FRAMES = 8
SENT_SIDE = 512
SENT_QUALITY = 85
INVALID_FRAMES = "invalid_frames"


class InputRefused(ModerationBlocked):
    """The input image or video was refused: code `moderation_blocked`, with the `categories` and the
    `source` (`sanity` or `classifier`). An `APIError`: the API answers it as 400, the worker fails the
    job with its code."""

    def __init__(self, message: str, *, param: str, categories: list[str], source: str) -> None:
        super().__init__(message, param=param, categories=categories)
        self.source = source


def check_input_frames(frames: Iterable[np.ndarray], settings: Settings, *, param: str = "input") -> None:
    """Check the frames of an input image (one frame) or video; return if they pass.

    Frames may be a list or a stream (read once; at most `2 * SAMPLED_FRAMES` are held). `param` names
    the input in the refusal (`image`, `video`, `input`). Raises `InputRefused`; with the classifier
    configured and unable to answer, `ServiceUnavailable` (code `moderation_unavailable`) unless
    `KINEMA_MODERATION_FAIL_OPEN` is true.
    """
    max_pixels = max(settings.input_image_max_pixels, settings.input_video_max_pixels)
    sample = _Sample(SAMPLED_FRAMES)
    shape: tuple[int, ...] | None = None
    for index, frame in enumerate(frames):
        problem = _frame_problem(frame, max_pixels)
        if problem is None and shape is not None and frame.shape != shape:
            problem = f"is {frame.shape[1]}x{frame.shape[0]}, the first was {shape[1]}x{shape[0]}"
        if problem is not None:
            raise _refuse(f"Frame {index} of the {param} {problem}.", param, [INVALID_FRAMES], "sanity")
        shape = frame.shape
        sample.add(index, frame)
    if shape is None:
        raise _refuse(f"The {param} has no frames.", param, [INVALID_FRAMES], "sanity")
    if not settings.moderation_image_url:
        return
    jpegs = [_jpeg(frame) for frame in sample.frames()]
    try:
        categories = classify_images(
            settings.moderation_image_url,
            jpegs,
            timeout_s=settings.moderation_image_timeout_s,
            api_key=settings.moderation_api_key,
        )
    except ClassifierUnavailable as exc:
        if settings.moderation_fail_open:
            log.warning("image classifier unavailable, letting the %s through: %s", param, exc)
            return
        log.error("image classifier unavailable, refusing the %s: %s", param, exc)
        raise ServiceUnavailable(
            f"The content classifier is unavailable; the {param} was not checked. Retry shortly.",
            code="moderation_unavailable",
        ) from exc
    if categories:
        raise _refuse(
            f"The {param} was refused by this deployment's content policy ({', '.join(categories)}).",
            param,
            categories,
            "classifier",
        )


def _refuse(message: str, param: str, categories: list[str], source: str) -> InputRefused:
    log.info("%s refused (%s): %s", param, source, ", ".join(categories))
    return InputRefused(message, param=param, categories=categories, source=source)


def _frame_problem(frame: object, max_pixels: int) -> str | None:
    """What is wrong with one frame as a decoded RGB picture, or None."""
    if not isinstance(frame, np.ndarray):
        return f"is a {type(frame).__name__}, not an array"
    if frame.dtype != np.uint8:
        return f"has {frame.dtype} samples, not uint8"
    if frame.ndim != 3 or frame.shape[2] != 3:
        return f"has shape {frame.shape}, not (height, width, 3)"
    height, width = frame.shape[:2]
    if min(height, width) < MIN_SIDE:
        return f"is {width}x{height}, under {MIN_SIDE} pixels a side"
    if height * width > max_pixels:
        return f"is {width}x{height}, over {max_pixels} pixels"
    return None


def _jpeg(frame: np.ndarray) -> bytes:
    """The frame as a JPEG of at most SENT_SIDE pixels a side: what the classifier sees."""
    image = Image.fromarray(frame)
    image.thumbnail((SENT_SIDE, SENT_SIDE))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=SENT_QUALITY)
    return out.getvalue()


class _Sample:
    """Frames spread evenly over a stream of unknown length, holding at most 2 x `size`: every
    `stride`-th frame is kept, and when too many are, every other one is dropped and the stride doubles."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.stride = 1
        self.kept: list[tuple[int, np.ndarray]] = []

    def add(self, index: int, frame: np.ndarray) -> None:
        if index % self.stride:
            return
        self.kept.append((index, frame))
        if len(self.kept) > 2 * self.size:
            self.stride *= 2
            self.kept = [(i, f) for i, f in self.kept if i % self.stride == 0]

    def frames(self) -> list[np.ndarray]:
        """At most `size` of the kept frames, evenly spread, the first included."""
        picks = np.linspace(0, len(self.kept) - 1, min(self.size, len(self.kept))).round().astype(int)
        return [self.kept[pick][1] for pick in sorted(set(picks.tolist()))]
