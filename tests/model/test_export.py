"""render_mp4 and probe_mp4: H.264 files whose facts read back exactly, with a thumbnail."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from model.export import ExportError, VideoInfo, probe_mp4, render_mp4
from model.generate import generate
from model.pipeline import LoadedModel
from model.watermark import VisibleWatermark
from tests.model.conftest import small_request


def gradient_frames(count: int, width: int = 200, height: int = 120) -> Iterator[np.ndarray]:
    """Frames that differ from each other (a moving gradient), produced one at a time."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    for index in range(count):
        red = (x + 12 * index) % 256
        yield np.stack([red + 0 * y, y + 0 * x, np.full((height, width), 40.0)], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("fps", [8, 16, 24])
def test_render_and_probe_agree_with_the_file(tmp_path: Path, fps: int) -> None:
    video, thumb = tmp_path / "out.mp4", tmp_path / "out.jpg"
    seen: list[int] = []
    info = render_mp4(gradient_frames(17), video, fps=fps, thumbnail_path=thumb, on_frame=seen.append)
    data = video.read_bytes()
    assert info == VideoInfo(
        width=200,
        height=120,
        fps=fps,
        frames=17,
        duration=17 / fps,
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    probed = probe_mp4(video)
    assert (probed.width, probed.height, probed.fps, probed.frames) == (200, 120, fps, 17)
    assert probed.duration == pytest.approx(17 / fps, abs=1e-6)
    assert (probed.bytes, probed.sha256) == (info.bytes, info.sha256)
    assert seen == list(range(1, 18))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jpg", "out.mp4"]


def test_the_file_is_h264_yuv420p_with_the_index_first(tmp_path: Path) -> None:
    video = tmp_path / "out.mp4"
    render_mp4(gradient_frames(5), video, fps=8)
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ("h264", "yuv420p")
    head = video.read_bytes()[:4096]
    assert head.index(b"moov") < head.index(b"mdat") if b"mdat" in head else b"moov" in head


@pytest.mark.parametrize(("index", "expected_frame"), [(0, 0), (3, 3), (99, 4)])
def test_thumbnail_is_a_jpeg_of_the_chosen_or_last_frame(
    tmp_path: Path, index: int, expected_frame: int
) -> None:
    thumb = tmp_path / "thumb.jpg"
    render_mp4(gradient_frames(5), tmp_path / "out.mp4", fps=8, thumbnail_path=thumb, thumbnail_index=index)
    assert thumb.read_bytes()[:3] == b"\xff\xd8\xff"
    with Image.open(thumb) as image:
        assert (image.format, image.size) == ("JPEG", (200, 120))
        pixels = np.asarray(image.convert("RGB"), dtype=int)
    frames = list(gradient_frames(5))
    errors = [np.abs(pixels - frame.astype(int)).mean() for frame in frames]
    assert int(np.argmin(errors)) == expected_frame


def test_watermark_is_burned_into_video_and_thumbnail(tmp_path: Path) -> None:
    black = (np.zeros((120, 200, 3), np.uint8) for _ in range(3))
    thumb = tmp_path / "thumb.jpg"
    render_mp4(black, tmp_path / "out.mp4", fps=8, thumbnail_path=thumb, watermark=VisibleWatermark())
    with Image.open(thumb) as image:
        pixels = np.asarray(image.convert("L"), dtype=int)
    assert pixels[90:, 100:].max() > 150  # light text in the bottom-right corner
    assert pixels[:40, :60].max() < 30


def test_generated_frames_stream_into_a_video(tiny_model: LoadedModel, tmp_path: Path) -> None:
    request = small_request(width=200, height=120, num_frames=9)
    info = render_mp4(generate(request, model=tiny_model), tmp_path / "gen.mp4", fps=request.fps)
    assert (info.width, info.height, info.frames, info.duration) == (200, 120, 9, 9 / 8)
    assert probe_mp4(tmp_path / "gen.mp4").frames == 9


def test_no_frames_is_an_error_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no frames"):
        render_mp4(iter([]), tmp_path / "out.mp4", fps=8, thumbnail_path=tmp_path / "t.jpg")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("width", "height"), [(201, 120), (200, 121)])
def test_odd_sizes_are_an_error(tmp_path: Path, width: int, height: int) -> None:
    with pytest.raises(ExportError, match="even width and height"):
        render_mp4(gradient_frames(2, width, height), tmp_path / "out.mp4", fps=8)
    assert list(tmp_path.iterdir()) == []


def test_a_frame_of_another_size_is_an_error(tmp_path: Path) -> None:
    frames = [np.zeros((120, 200, 3), np.uint8), np.zeros((64, 64, 3), np.uint8)]
    with pytest.raises(ExportError, match="frame of shape"):
        render_mp4(iter(frames), tmp_path / "out.mp4", fps=8)
    assert list(tmp_path.iterdir()) == []


def test_a_failing_frame_source_leaves_no_partial_files(tmp_path: Path) -> None:
    def frames() -> Iterator[np.ndarray]:
        yield from gradient_frames(3)
        raise RuntimeError("generation broke")

    with pytest.raises(RuntimeError, match="generation broke"):
        render_mp4(frames(), tmp_path / "out.mp4", fps=8, thumbnail_path=tmp_path / "t.jpg")
    assert list(tmp_path.iterdir()) == []
