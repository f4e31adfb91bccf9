"""Input videos: MP4, MOV and WebM by content, decoded to the last frame, within byte/length/size limits."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from app.errors import APIError
from app.inputs.service import InputSource, ReceivedInput, receive
from tests.inputs import samples

VIDEO = frozenset({"video"})


def _source(data: bytes, param: str = "video") -> InputSource:
    return InputSource(param=param, accepts=VIDEO, file=io.BytesIO(data))


def _refusal(data: bytes, settings: Any, param: str = "video") -> APIError:
    with pytest.raises(APIError) as caught, receive(_source(data, param), settings):
        pass
    assert caught.value.param == param
    return caught.value


@pytest.mark.parametrize(
    ("container", "codec", "ext"),
    [("mp4", "libx264", "mp4"), ("mov", "libx264", "mov"), ("webm", "libvpx-vp9", "webm")],
)
def test_mp4_mov_and_webm_are_probed_and_kept_as_sent(
    container: str, codec: str, ext: str, tmp_path: Path, input_settings: Any
) -> None:
    data = samples.video_bytes(
        tmp_path, f"clip.bin-{ext}", container=container, codec=codec, frames=16, fps=8
    )
    with receive(_source(data), input_settings()) as received:
        assert isinstance(received, ReceivedInput) and received.type == "video"
        assert received.format.ext == ext and received.path.read_bytes() == data
        video = received.video
        assert video is not None
        assert (video.width, video.height, video.frames) == (160, 96, 16)
        assert video.fps == pytest.approx(8) and video.duration_s == pytest.approx(2.0)


def test_a_text_file_named_mp4_is_415(tmp_path: Path, input_settings: Any) -> None:
    path = tmp_path / "movie.mp4"
    path.write_text("definitely a movie\n")
    error = _refusal(path.read_bytes(), input_settings())
    assert (error.status_code, error.code) == (415, "unsupported_media_type") and "text" in error.message


def test_matroska_is_not_webm(tmp_path: Path, input_settings: Any) -> None:
    data = samples.video_bytes(tmp_path, "clip.webm", container="matroska", codec="libx264")
    error = _refusal(data, input_settings())
    assert error.code == "unsupported_media_type" and "Matroska" in error.message


def test_an_image_sent_as_a_video_is_415(input_settings: Any) -> None:
    assert _refusal(samples.image_bytes("PNG"), input_settings()).code == "unsupported_media_type"


@pytest.mark.parametrize("faststart", [False, True])
def test_a_truncated_mp4_is_unreadable(faststart: bool, tmp_path: Path, input_settings: Any) -> None:
    # Without faststart the index is at the end (cut off); with it, the frames the index lists are missing.
    data = samples.video_bytes(tmp_path, frames=24, faststart=faststart)
    error = _refusal(data[: int(len(data) * 0.6)], input_settings())
    assert (error.status_code, error.code) == (400, "input_unreadable")


def test_a_truncated_webm_is_unreadable(tmp_path: Path, input_settings: Any) -> None:
    # WebM has no frame index: the decoded length falls short of the duration its header declares.
    data = samples.video_bytes(tmp_path, "clip.webm", container="webm", codec="libvpx-vp9", frames=24)
    error = _refusal(data[: int(len(data) * 0.6)], input_settings())
    assert error.code == "input_unreadable" and "truncated" in error.message


def test_ftyp_then_garbage_is_unreadable(input_settings: Any) -> None:
    data = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00garbage" * 100
    assert _refusal(data, input_settings()).code == "input_unreadable"


def test_over_the_length_limit_is_413(tmp_path: Path, input_settings: Any) -> None:
    data = samples.video_bytes(tmp_path, frames=24, fps=8)  # 3 s
    error = _refusal(data, input_settings(input_video_max_duration_s=2))
    assert (error.status_code, error.code) == (413, "input_too_large") and "3.0 s" in error.message


def test_over_the_resolution_limits_is_413(tmp_path: Path, input_settings: Any) -> None:
    data = samples.video_bytes(tmp_path, size=(160, 96))
    assert _refusal(data, input_settings(input_video_max_side=128)).code == "input_too_large"
    assert _refusal(data, input_settings(input_video_max_pixels=160 * 95)).code == "input_too_large"


def test_over_the_byte_limit_is_413(tmp_path: Path, input_settings: Any) -> None:
    data = samples.video_bytes(tmp_path)
    assert len(data) > 2048
    error = _refusal(data, input_settings(input_video_max_bytes=2048))
    assert (error.status_code, error.code) == (413, "input_too_large")
