"""The worker's marks follow the settings: visible label placement and motion, invisible payload."""

from __future__ import annotations

import numpy as np

from app.config import Settings
from model.invisible_watermark import Payload, detect_frames
from worker.provenance import mark_frames, visible_watermark


def corner_of_label(frame: np.ndarray) -> str:
    """Which quadrant the (light) label pixels on a black frame fall in."""
    ys, xs = np.nonzero(frame.max(axis=2) > 100)
    vertical = "top" if ys.mean() < frame.shape[0] / 2 else "bottom"
    horizontal = "left" if xs.mean() < frame.shape[1] / 2 else "right"
    return f"{vertical}-{horizontal}"


def test_visible_mark_takes_position_opacity_and_moves_between_corners() -> None:
    black = np.zeros((144, 256, 3), np.uint8)
    fixed = visible_watermark(Settings(watermark_position="top-left", watermark_scale=0.1), fps=8)
    assert fixed is not None and corner_of_label(fixed.apply(black, 100)) == "top-left"

    moving = visible_watermark(
        Settings(watermark_position="top-left", watermark_scale=0.1, watermark_move_interval_s=0.5), fps=8
    )
    assert moving is not None
    corners = [corner_of_label(moving.apply(black, index)) for index in (0, 3, 4, 8, 12, 16)]
    assert corners == ["top-left", "top-left", "top-right", "bottom-left", "bottom-right", "top-left"]

    faint = visible_watermark(Settings(watermark_opacity=0.2, watermark_scale=0.1), fps=8)
    strong = visible_watermark(Settings(watermark_opacity=1.0, watermark_scale=0.1), fps=8)
    assert faint is not None and strong is not None
    assert faint.apply(black).max() < strong.apply(black).max()
    assert visible_watermark(Settings(watermark_enabled=False), fps=8) is None


def test_mark_frames_applies_both_marks_and_each_can_be_switched_off() -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(40, 200, (96, 160, 3), dtype=np.uint8) for _ in range(6)]
    settings = Settings(watermark_issuer="acme")
    marked = list(mark_frames(iter(frames), settings, key_id="key_1", job_id="video_1", fps=8))
    assert detect_frames(marked).payload == Payload.for_job("acme", "key_1", "video_1")

    off = Settings(watermark_enabled=False, invisible_watermark_enabled=False)
    untouched = list(mark_frames(iter(frames), off, key_id="key_1", job_id="video_1", fps=8))
    assert all(np.array_equal(a, b) for a, b in zip(untouched, frames, strict=True))
    assert not detect_frames(untouched).found
