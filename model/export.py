"""Encode streamed frames to an H.264 MP4 (plus a JPEG thumbnail) and read an MP4's facts back."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from model.watermark import VisibleWatermark

THUMBNAIL_QUALITY = 85
VIDEO_ENCODERS = ("libx264", "h264_nvenc", "auto")

logger = logging.getLogger(__name__)


class ExportError(ValueError):
    """Frames could not be written as a video (none given, odd or changing size, wrong dtype)."""


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What a finished MP4 holds: its size, timing and the digest of the file's bytes."""

    width: int
    height: int
    fps: int
    frames: int
    duration: float
    bytes: int
    sha256: str


def render_mp4(
    frames: Iterable[np.ndarray],
    path: Path,
    *,
    fps: int,
    thumbnail_path: Path | None = None,
    thumbnail_index: int = 0,
    watermark: VisibleWatermark | None = None,
    on_frame: Callable[[int], None] | None = None,
    crf: int = 23,
    preset: str = "veryfast",
    encoder: str = "libx264",
) -> VideoInfo:
    """Encode (H, W, 3) uint8 frames as they arrive into an H.264/yuv420p MP4 at `path`.

    Holds one frame at a time. Each frame gets the `watermark` (if any) before encoding;
    `on_frame(n)` is called after the n-th frame (1-based) is encoded. The file is written next to
    `path` and renamed into place, with the moov atom first (`+faststart`) so players can stream it.
    The thumbnail is a JPEG of frame `thumbnail_index`, or of the last frame for a shorter video.
    `encoder` is "libx264" (`crf`, `preset`), "h264_nvenc" (the GPU's encoder: constant quality `crf`,
    its own preset) or "auto" (NVENC when it opens here, else libx264; see `resolve_video_encoder`).
    Raises `ExportError` for no frames, an odd or changing size, frames that are not uint8 RGB, or
    "h264_nvenc" on a machine without it.
    """
    if fps < 1:
        raise ExportError(f"fps must be a positive integer; got {fps}")
    if encoder not in VIDEO_ENCODERS:
        raise ExportError(f"video encoder must be one of {', '.join(VIDEO_ENCODERS)}; got {encoder!r}")
    path = Path(path)
    partial = _partial_path(path)
    thumbnail_partial = _partial_path(Path(thumbnail_path)) if thumbnail_path is not None else None
    count = 0
    frame: np.ndarray | None = None
    thumbnail_written = False
    try:
        options = {
            # +faststart moves the index to the front at close, so it needs a real path (not a stream).
            "movflags": "+faststart",
            # B-frames add an edit list, kept in the movie timescale (default 1 ms): make it a multiple of
            # fps so the stored duration is exactly frames / fps.
            "movie_timescale": str(fps * 1000),
        }
        with av.open(str(partial), mode="w", format="mp4", options=options) as container:
            stream: av.VideoStream | None = None
            for frame in frames:
                if stream is None:
                    stream = _add_h264_stream(
                        container, frame, fps=fps, crf=crf, preset=preset, encoder=encoder
                    )
                _check_frame(frame, stream.width, stream.height)
                if watermark is not None:
                    frame = watermark.apply(frame)
                video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
                video_frame.pts = count
                container.mux(stream.encode(video_frame))
                if thumbnail_partial is not None and count == thumbnail_index:
                    _save_jpeg(frame, thumbnail_partial)
                    thumbnail_written = True
                count += 1
                if on_frame is not None:
                    on_frame(count)
            if stream is None or frame is None:
                raise ExportError("no frames to encode")
            container.mux(stream.encode(None))  # flush the frames the encoder still holds
        if thumbnail_partial is not None and thumbnail_path is not None:
            if not thumbnail_written:
                _save_jpeg(frame, thumbnail_partial)
            os.replace(thumbnail_partial, thumbnail_path)
        os.replace(partial, path)
    finally:
        # On failure nothing is left behind: neither half a video nor a thumbnail of it.
        partial.unlink(missing_ok=True)
        if thumbnail_partial is not None:
            thumbnail_partial.unlink(missing_ok=True)
    size, digest = _size_and_sha256(path)
    height, width = frame.shape[:2]
    return VideoInfo(
        width=width, height=height, fps=fps, frames=count, duration=count / fps, bytes=size, sha256=digest
    )


def probe_mp4(path: Path) -> VideoInfo:
    """Read a video file's size, frame rate, decoded frame count, duration and digest with PyAV."""
    path = Path(path)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(0)
        frames = sum(1 for _ in container.decode(stream))
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = (container.duration or 0) / av.time_base
        width, height = stream.codec_context.width, stream.codec_context.height
    size, digest = _size_and_sha256(path)
    return VideoInfo(
        width=width,
        height=height,
        fps=round(rate),
        frames=frames,
        duration=duration,
        bytes=size,
        sha256=digest,
    )


def resolve_video_encoder(choice: str, width: int = 256, height: int = 256) -> str:
    """The H.264 encoder that `choice` means for `width`x`height` frames on this machine.

    "auto" is "h264_nvenc" where it opens here at that size, else "libx264".

    Raises `ExportError` for an unknown name, or for "h264_nvenc" where it does not open.
    """
    if choice not in VIDEO_ENCODERS:
        raise ExportError(f"video encoder must be one of {', '.join(VIDEO_ENCODERS)}; got {choice!r}")
    if choice == "libx264":
        return choice
    reason = _nvenc_unavailable_reason(width, height)
    if reason is None:
        return "h264_nvenc"
    if choice == "h264_nvenc":
        raise ExportError(f"h264_nvenc cannot encode on this machine: {reason}")
    return "libx264"


@functools.cache
def _nvenc_unavailable_reason(width: int, height: int) -> str | None:
    """Why NVENC cannot encode `width`x`height` here (None when it can): built in, and it opens.

    PyAV wheels carry h264_nvenc; opening it needs an NVIDIA GPU and driver, and the GPU has a minimum
    and maximum frame size. Checked once per process and size.
    """
    if "h264_nvenc" not in av.codecs_available:
        return "this PyAV build has no h264_nvenc"
    try:
        context = av.CodecContext.create("h264_nvenc", "w")
        context.width, context.height = width, height
        context.pix_fmt = "yuv420p"
        context.time_base = Fraction(1, 25)
        context.framerate = Fraction(25, 1)
        context.open()
    except Exception as exc:  # PyAV raises its own error per errno; any failure means no NVENC
        logger.info("h264_nvenc does not open here; video_encoder=auto uses libx264 (%s)", exc)
        return str(exc)
    return None


def _add_h264_stream(
    container: av.container.OutputContainer,
    first: np.ndarray,
    *,
    fps: int,
    crf: int,
    preset: str,
    encoder: str = "libx264",
) -> av.VideoStream:
    """Add the H.264 stream sized from the first frame; time base 1/fps so pts count frames."""
    if first.ndim != 3 or first.shape[2] != 3:
        raise ExportError(f"frames must be (H, W, 3); got shape {first.shape}")
    height, width = first.shape[:2]
    if width % 2 or height % 2:
        raise ExportError(f"yuv420p needs an even width and height; got {width}x{height}")
    codec = resolve_video_encoder(encoder, width, height)
    stream = container.add_stream(codec, rate=fps)
    assert isinstance(stream, av.VideoStream)  # an H.264 encoder always makes a video stream
    stream.width = width
    stream.height = height
    stream.pix_fmt = "yuv420p"
    stream.time_base = Fraction(1, fps)
    stream.codec_context.time_base = Fraction(1, fps)
    if codec == "h264_nvenc":
        # NVENC has no crf: variable bit rate at constant quality `cq` (bit-rate cap 0) is its equivalent.
        stream.options = {"rc": "vbr", "cq": str(crf), "b": "0", "preset": "p4"}
    else:
        stream.options = {"crf": str(crf), "preset": preset}
    return stream


def _check_frame(frame: np.ndarray, width: int, height: int) -> None:
    """Every frame must match the first frame's size and be uint8 RGB."""
    if frame.dtype != np.uint8:
        raise ExportError(f"frames must be uint8; got {frame.dtype}")
    if frame.shape != (height, width, 3):
        raise ExportError(f"frame of shape {frame.shape} in a {width}x{height} video")


def _partial_path(path: Path) -> Path:
    """A hidden sibling to write into before renaming, so readers never see a half-written file."""
    return path.with_name(f".{path.name}.partial")


def _save_jpeg(frame: np.ndarray, path: Path) -> None:
    """Write an RGB frame as a JPEG (format named explicitly: the path has no .jpg suffix)."""
    Image.fromarray(frame).save(path, format="JPEG", quality=THUMBNAIL_QUALITY)


def _size_and_sha256(path: Path) -> tuple[int, str]:
    """The file's size in bytes and the hex SHA-256 of its contents, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()
