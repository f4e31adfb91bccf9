"""Encode streamed frames to an H.264 MP4 (with an optional AAC soundtrack and a JPEG thumbnail) and read
an MP4's facts back."""

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
# AAC at 64 kb/s a channel; a sample rate the encoder does not take is resampled to 48 kHz.
AAC_BIT_RATE_PER_CHANNEL = 64_000
AAC_FALLBACK_RATE = 48_000
_LAYOUTS = {1: "mono", 2: "stereo"}

logger = logging.getLogger(__name__)


class ExportError(ValueError):
    """Frames could not be written as a video (none given, odd or changing size, wrong dtype)."""


@dataclass(frozen=True, slots=True)
class AudioClip:
    """A soundtrack to mux: float samples in [-1, 1], shape (channels, samples), at `sample_rate` Hz."""

    samples: np.ndarray
    sample_rate: int

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        return self.samples.shape[1] / self.sample_rate


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """An MP4's audio stream: its codec, sample rate, channel count and length in seconds."""

    codec: str
    sample_rate: int
    channels: int
    duration: float


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What a finished MP4 holds: its size, timing and the digest of the file's bytes; `audio` when it
    has a soundtrack."""

    width: int
    height: int
    fps: int
    frames: int
    duration: float
    bytes: int
    sha256: str
    audio: AudioInfo | None = None


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
    audio: AudioClip | None = None,
) -> VideoInfo:
    """Encode (H, W, 3) uint8 frames as they arrive into an H.264/yuv420p MP4 at `path`.

    Holds one frame at a time. Each frame gets the `watermark` (if any) before encoding;
    `on_frame(n)` is called after the n-th frame (1-based) is encoded. The file is written next to
    `path` and renamed into place, with the moov atom first (`+faststart`) so players can stream it.
    The thumbnail is a JPEG of frame `thumbnail_index`, or of the last frame for a shorter video.
    `encoder` is "libx264" (`crf`, `preset`), "h264_nvenc" (the GPU's encoder: constant quality `crf`,
    its own preset) or "auto" (NVENC when it opens here, else libx264; see `resolve_video_encoder`).
    With `audio` the MP4 gets an AAC track exactly as long as the video (cut, or padded with silence),
    interleaved with the frames as they are encoded (see `AudioClip` and `_Soundtrack`).
    Raises `ExportError` for no frames, an odd or changing size, frames that are not uint8 RGB, audio
    that is not mono or stereo, or "h264_nvenc" on a machine without it.
    """
    if fps < 1:
        raise ExportError(f"fps must be a positive integer; got {fps}")
    if encoder not in VIDEO_ENCODERS:
        raise ExportError(f"video encoder must be one of {', '.join(VIDEO_ENCODERS)}; got {encoder!r}")
    if audio is not None:
        _check_audio(audio)
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
            soundtrack: _Soundtrack | None = None
            for frame in frames:
                if stream is None:
                    stream = _add_h264_stream(
                        container, frame, fps=fps, crf=crf, preset=preset, encoder=encoder
                    )
                    # Every stream is added before the first packet: the header is written with it.
                    soundtrack = _Soundtrack(container, audio, fps) if audio is not None else None
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
                if soundtrack is not None:
                    soundtrack.encode_until(count)
                if on_frame is not None:
                    on_frame(count)
            if stream is None or frame is None:
                raise ExportError("no frames to encode")
            container.mux(stream.encode(None))  # flush the frames the encoder still holds
            audio_info = soundtrack.finish(count) if soundtrack is not None else None
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
        width=width,
        height=height,
        fps=fps,
        frames=count,
        duration=count / fps,
        bytes=size,
        sha256=digest,
        audio=audio_info,
    )


def probe_mp4(path: Path) -> VideoInfo:
    """Read a video file's size, frame rate, decoded frame count, duration, digest and audio with PyAV."""
    path = Path(path)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(0)
        frames = sum(1 for _ in container.decode(stream))
        duration = _stream_duration(stream, container)
        width, height = stream.codec_context.width, stream.codec_context.height
        audio = None
        if container.streams.audio:
            sound = container.streams.audio[0]
            audio = AudioInfo(
                codec=sound.codec_context.name,
                sample_rate=sound.codec_context.sample_rate,
                channels=sound.codec_context.channels,
                duration=_stream_duration(sound, container),
            )
    size, digest = _size_and_sha256(path)
    return VideoInfo(
        width=width,
        height=height,
        fps=round(rate),
        frames=frames,
        duration=duration,
        bytes=size,
        sha256=digest,
        audio=audio,
    )


def read_audio(path: Path, *, sample_rate: int, channels: int) -> AudioClip | None:
    """The first audio stream of the file at `path`, decoded and resampled to `sample_rate` Hz and
    `channels` (1 or 2); None when the file has no audio. Raises `ExportError` for another channel count.
    """
    layout = _LAYOUTS.get(channels)
    if layout is None:
        raise ExportError(f"audio must be mono or stereo; got {channels} channels")
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=sample_rate)
    parts: list[np.ndarray] = []
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        for decoded in container.decode(container.streams.audio[0]):
            parts.extend(part.to_ndarray() for part in resampler.resample(decoded))
    parts.extend(part.to_ndarray() for part in resampler.resample(None))
    samples = np.concatenate(parts, axis=1) if parts else np.zeros((channels, 0), np.float32)
    return AudioClip(samples.astype(np.float32, copy=False), sample_rate)


def _stream_duration(stream: av.stream.Stream, container: av.container.InputContainer) -> float:
    """A stream's length in seconds (its own duration; else the container's)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return (container.duration or 0) / av.time_base


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


def _check_audio(audio: AudioClip) -> None:
    """Mono or stereo samples, (channels, samples), at a positive rate."""
    if audio.samples.ndim != 2 or audio.channels not in _LAYOUTS:
        raise ExportError(
            f"audio must be (channels, samples) with 1 or 2 channels; got {audio.samples.shape}"
        )
    if audio.sample_rate < 1:
        raise ExportError(f"audio sample rate must be positive; got {audio.sample_rate}")


class _Soundtrack:
    """The AAC stream of an MP4 being written, fed as the video's frames are encoded.

    After the n-th frame it has been given the samples up to n / fps seconds, so audio and video packets
    reach the muxer in step (the muxer interleaves them by time; a player streaming the file reads both
    from the same stretch of it). `finish` pads the clip with silence or cuts it to the video's length.
    """

    def __init__(self, container: av.container.OutputContainer, audio: AudioClip, fps: int) -> None:
        self.audio = audio
        self.fps = fps
        self.samples = np.clip(np.nan_to_num(audio.samples.astype(np.float32, copy=False)), -1.0, 1.0)
        self.layout = _LAYOUTS[audio.channels]
        rates = av.Codec("aac", "w").audio_rates or ()
        # PyAV's encoder resamples frames of another rate to the stream's.
        self.rate = audio.sample_rate if audio.sample_rate in rates else AAC_FALLBACK_RATE
        stream = container.add_stream("aac", rate=self.rate)
        assert isinstance(stream, av.AudioStream)  # the AAC encoder makes an audio stream
        stream.layout = self.layout
        stream.bit_rate = AAC_BIT_RATE_PER_CHANNEL * audio.channels
        self.stream = stream
        self.container = container
        self.fed = 0  # samples given to the encoder, at the clip's rate

    def encode_until(self, frames: int) -> None:
        """Encode the samples up to the end of the `frames`-th video frame."""
        self._encode_to(frames * self.audio.sample_rate // self.fps)

    def finish(self, frames: int) -> AudioInfo:
        """Encode up to the video's end (`frames` long), silence after the clip's end, and flush."""
        self._encode_to(frames * self.audio.sample_rate // self.fps)
        self.container.mux(self.stream.encode(None))
        return AudioInfo(
            codec="aac",
            sample_rate=self.rate,
            channels=self.audio.channels,
            duration=self.fed / self.audio.sample_rate,
        )

    def _encode_to(self, end: int) -> None:
        if end <= self.fed:
            return
        chunk = self.samples[:, self.fed : end]
        if chunk.shape[1] < end - self.fed:  # past the clip's end: silence
            silence = np.zeros((self.audio.channels, end - self.fed - chunk.shape[1]), np.float32)
            chunk = np.concatenate([chunk, silence], axis=1)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=self.layout)
        frame.sample_rate = self.audio.sample_rate
        frame.time_base = Fraction(1, self.audio.sample_rate)
        frame.pts = self.fed
        self.container.mux(self.stream.encode(frame))
        self.fed = end


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
