"""The invisible watermark: embedded at PSNR >= 40 dB, read back from an MP4 after a crf 28 re-encode."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from model.export import render_mp4
from model.invisible_watermark import (
    CODE_BITS,
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


def reencode(source: Path, dest: Path, crf: int) -> None:
    """Decode and encode again with libx264 at `crf`, as a re-upload would."""
    with av.open(str(source)) as src, av.open(str(dest), "w") as out:
        stream = None
        for frame in src.decode(video=0):
            if stream is None:
                stream = out.add_stream("libx264", rate=8, options={"crf": str(crf), "preset": "veryfast"})
                stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, "yuv420p"
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), "rgb24")))
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


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_clean_video_reports_no_watermark(tmp_path: Path, seed: int) -> None:
    render_mp4(iter(scene(seed=seed)), tmp_path / "clean.mp4", fps=8)
    detection = detect_file(tmp_path / "clean.mp4")
    assert not detection.found and detection.payload is None
    assert detection.frames == 16


def test_frames_too_small_for_the_grid_pass_through_unmarked() -> None:
    tiny = np.full((8, 8, 3), 100, np.uint8)
    assert np.array_equal(InvisibleWatermark(PAYLOAD).apply(tiny), tiny)
    assert not detect_frames([tiny]).found
