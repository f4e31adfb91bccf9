"""The invisible watermark: embedded at PSNR >= 40 dB, read back from an MP4 after a crf 28 re-encode and
after a crop, never read from a clean video."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from model.export import render_mp4
from model.invisible_watermark import (
    CODE_BITS,
    GRID_COLS,
    GRID_ROWS,
    Crop,
    InvisibleWatermark,
    Payload,
    decode_bits,
    detect_file,
    detect_frames,
    encode_bits,
)

PAYLOAD = Payload.for_job("kinema", "key_0123", "video_0123456789abcdef")


def scene(count: int = 16, height: int = 144, width: int = 256, seed: int = 0) -> list[np.ndarray]:
    """A moving sinusoid over a coloured gradient with sensor-like noise: content with structure."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for t in range(count):
        luma = 128 + 80 * np.sin(xx / 23 + t / 3) * np.cos(yy / 31 - t / 5)
        rgb = luma[:, :, None] * np.array([1.0, 0.8, 0.6]) + rng.normal(0, 8, (height, width, 3))
        frames.append(np.clip(rgb, 0, 255).astype(np.uint8))
    return frames


def reencode(source: Path, dest: Path, crf: int, cut: tuple[int, int, int, int] = (0, 0, 0, 0)) -> None:
    """Decode and encode again with libx264 at `crf`, as a re-upload would, cutting `cut` pixels off
    the left, right, top and bottom."""
    left, right, top, bottom = cut
    with av.open(str(source)) as src, av.open(str(dest), "w") as out:
        stream = None
        for frame in src.decode(video=0):
            image = frame.to_ndarray(format="rgb24")
            image = np.ascontiguousarray(image[top : image.shape[0] - bottom, left : image.shape[1] - right])
            if stream is None:
                stream = out.add_stream("libx264", rate=8, options={"crf": str(crf), "preset": "veryfast"})
                stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], "yuv420p"
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, "rgb24")))
        assert stream is not None
        out.mux(stream.encode(None))


def test_payload_bits_round_trip_and_check_code_rejects_a_flipped_bit() -> None:
    bits = encode_bits(PAYLOAD)
    assert bits.shape == (CODE_BITS,)
    assert decode_bits(bits) == PAYLOAD
    for index in (0, 40, 70, 95):
        flipped = bits.copy()
        flipped[index] ^= 1
        assert decode_bits(flipped) is None


def test_each_cell_moves_by_one_shift_saturating_at_black_and_white() -> None:
    frame = scene(count=1)[0]
    frame[:30] = 255  # white rows and black columns: the shift must saturate, not wrap
    frame[:, :20] = 0
    marked = InvisibleWatermark(PAYLOAD).apply(frame)
    rows = np.linspace(0, frame.shape[0], GRID_ROWS + 1).round().astype(int)
    cols = np.linspace(0, frame.shape[1], GRID_COLS + 1).round().astype(int)
    for i in range(GRID_ROWS):
        for j in range(GRID_COLS):
            cell = np.s_[rows[i] : rows[i + 1], cols[j] : cols[j + 1]]
            shifts = marked[cell].astype(int) - frame[cell]
            shift = int(shifts.max() if shifts.max() > 0 else shifts.min())
            assert abs(shift) <= 5
            expected = np.clip(frame[cell].astype(int) + shift, 0, 255)
            assert np.array_equal(marked[cell], expected), (i, j)


def test_marked_frames_stay_close_to_the_original() -> None:
    frames = scene()
    mark = InvisibleWatermark(PAYLOAD)
    mse = np.mean([(mark.apply(f).astype(float) - f) ** 2 for f in frames])
    assert 10 * np.log10(255**2 / mse) >= 40


def test_payload_survives_mp4_and_a_crf_28_reencode(tmp_path: Path) -> None:
    mark = InvisibleWatermark(PAYLOAD)
    render_mp4((mark.apply(f) for f in scene()), tmp_path / "marked.mp4", fps=8)
    reencode(tmp_path / "marked.mp4", tmp_path / "crf28.mp4", crf=28)
    for name in ("marked.mp4", "crf28.mp4"):
        detection = detect_file(tmp_path / name)
        assert detection.payload == PAYLOAD, name
        assert detection.frames == 16


@pytest.mark.parametrize(
    ("cut", "crop"),
    [
        # 10% of each axis: 5% off each side (13 and 7 of 256 x 144 pixels)
        ((13, 13, 7, 7), Crop(0.05, 0.05, 0.05, 0.05)),
        ((26, 0, 0, 0), Crop(0.1, 0.0, 0.0, 0.0)),  # 10% off one side
        ((8, 18, 12, 0), Crop(0.03, 0.07, 0.08, 0.0)),  # uneven
    ],
)
def test_payload_survives_a_crop_and_the_search_finds_it(
    tmp_path: Path, cut: tuple[int, int, int, int], crop: Crop
) -> None:
    mark = InvisibleWatermark(PAYLOAD)
    render_mp4((mark.apply(f) for f in scene()), tmp_path / "marked.mp4", fps=8)
    reencode(tmp_path / "marked.mp4", tmp_path / "cropped.mp4", crf=23, cut=cut)
    detection = detect_file(tmp_path / "cropped.mp4")
    assert detection.payload == PAYLOAD
    assert detection.crop is not None
    found = (detection.crop.left, detection.crop.right, detection.crop.top, detection.crop.bottom)
    assert np.allclose(found, (crop.left, crop.right, crop.top, crop.bottom), atol=0.01)


def test_detector_stops_reading_once_the_check_code_matches(tmp_path: Path) -> None:
    mark = InvisibleWatermark(PAYLOAD)
    render_mp4((mark.apply(f) for f in scene(count=40)), tmp_path / "long.mp4", fps=8)
    detection = detect_file(tmp_path / "long.mp4")
    assert detection.payload == PAYLOAD and detection.crop == Crop()
    assert detection.frames == 16 and detection.checks == 2


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_clean_video_reports_no_watermark(tmp_path: Path, seed: int) -> None:
    render_mp4(iter(scene(seed=seed)), tmp_path / "clean.mp4", fps=8)
    detection = detect_file(tmp_path / "clean.mp4")
    assert not detection.found and detection.payload is None
    assert detection.frames == 16
    # The whole frame twice (at 16 frames and at the end), then at most 3 crops: the false-positive
    # bound of the module's docstring counts on this.
    assert 3 <= detection.checks <= 5


def test_frames_too_small_for_the_grid_pass_through_unmarked() -> None:
    tiny = np.full((8, 8, 3), 100, np.uint8)
    assert np.array_equal(InvisibleWatermark(PAYLOAD).apply(tiny), tiny)
    assert not detect_frames([tiny]).found
