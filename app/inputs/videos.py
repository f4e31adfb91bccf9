"""Input videos: probed and decoded to the last frame with PyAV, within duration and resolution limits."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from app.errors import InputTooLarge, UnsupportedMediaType
from app.inputs.images import unreadable
from app.inputs.media import MOV, MP4, WEBM, MediaFormat

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream

# The demuxer for each accepted container, named so FFmpeg never guesses (no playlists, no other formats).
_DEMUXERS = {MP4: "mp4", MOV: "mov", WEBM: "webm"}
# Video codecs the gateway will run FFmpeg's decoders on; anything else is refused unread.
ACCEPTED_CODECS = frozenset({"h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "prores", "mjpeg"})
MAX_FPS = 240  # a higher declared rate is a broken or hostile header, not a real camera


@dataclass(frozen=True, slots=True)
class VideoLimits:
    """What an input video may be."""

    max_duration_s: float
    max_side: int
    max_pixels: int


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """The decoded video stream: size, rate and length as counted while decoding."""

    width: int
    height: int
    fps: float
    frames: int
    duration_s: float
    codec: str


def probe_video(source: Path, media: MediaFormat, limits: VideoLimits, *, param: str) -> VideoInfo:
    """Open `source` (already recognised as `media`) and decode every frame of its first video stream.

    Refuses (naming `param`) a file that does not open, a codec outside ACCEPTED_CODECS, a size, rate or
    length over the limits (checked from the header first, then again while decoding), and a file that
    ends before the frames its header declares (truncated).
    """
    import av  # the API process loads PyAV only when a video arrives
    import av.error

    what = f"{media.ext.upper()} video"
    try:
        with source.open("rb") as raw, av.open(raw, "r", format=_DEMUXERS[media]) as container:
            if not container.streams.video:
                raise unreadable(param, what, "it has no video stream")
            stream = container.streams.video[0]
            codec = stream.codec_context.name
            if codec not in ACCEPTED_CODECS:
                raise UnsupportedMediaType(
                    f"{param} uses the {codec} video codec; accepted: {', '.join(sorted(ACCEPTED_CODECS))}.",
                    param=param,
                )
            _check_size(stream.codec_context.width, stream.codec_context.height, limits, param)
            fps = _frame_rate(stream.average_rate or stream.guessed_rate, param, what)
            declared = _declared_duration(stream, container)
            if declared is not None and declared > limits.max_duration_s:
                raise _too_long(declared, limits, param)
            stream.thread_type = "AUTO"
            frames = 0
            max_frames = int(limits.max_duration_s * fps) + 1
            for frame in container.decode(stream):
                frames += 1
                _check_size(frame.width, frame.height, limits, param)  # a stream may change size midway
                if frames > max_frames:
                    raise _too_long(frames / fps, limits, param)
            if frames == 0:
                raise unreadable(param, what, "no frame decodes")
            if stream.frames and frames < stream.frames:
                raise unreadable(
                    param, what, f"it ends after {frames} of its {stream.frames} frames (truncated?)"
                )
            # WebM declares no frame count, only a duration (a whole-file one, so allow for longer audio).
            if declared is not None and frames / fps < declared * 0.9 - 0.5:
                raise unreadable(
                    param, what, f"it ends at {frames / fps:.2f} s of its {declared:.2f} s (truncated?)"
                )
            width, height = stream.codec_context.width, stream.codec_context.height
    except av.error.FFmpegError as exc:
        # FFmpeg's reason only: its message also names the work file's path.
        raise unreadable(param, what, exc.strerror or type(exc).__name__) from exc
    return VideoInfo(width=width, height=height, fps=fps, frames=frames, duration_s=frames / fps, codec=codec)


def _check_size(width: int, height: int, limits: VideoLimits, param: str) -> None:
    if max(width, height) > limits.max_side or width * height > limits.max_pixels:
        raise InputTooLarge(
            f"{param} is {width}x{height}; the limit is {limits.max_side} pixels a side and "
            f"{limits.max_pixels} pixels a frame.",
            param=param,
        )


def _frame_rate(rate: Fraction | None, param: str, what: str) -> float:
    fps = float(rate) if rate else 0.0
    if not 0 < fps <= MAX_FPS:
        raise unreadable(param, what, f"its frame rate ({fps:g}) is not one a video plays at")
    return fps


def _declared_duration(stream: VideoStream, container: InputContainer) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _too_long(seconds: float, limits: VideoLimits, param: str) -> InputTooLarge:
    return InputTooLarge(
        f"{param} is {seconds:.1f} s long; the limit is {limits.max_duration_s:g} s.", param=param
    )
