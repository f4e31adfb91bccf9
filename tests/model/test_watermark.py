"""The visible watermark: drawn in its corner, nowhere else, readable on light and dark frames."""

from __future__ import annotations

import numpy as np
import pytest

from model.watermark import CORNERS, VisibleWatermark

OPPOSITE = {
    "top-left": "bottom-right",
    "top-right": "bottom-left",
    "bottom-left": "top-right",
    "bottom-right": "top-left",
}


def corner(frame: np.ndarray, name: str) -> np.ndarray:
    """The quarter of the frame at a named corner."""
    h, w = frame.shape[0] // 2, frame.shape[1] // 2
    rows = slice(0, h) if name.startswith("top") else slice(h, None)
    cols = slice(0, w) if name.endswith("left") else slice(w, None)
    return frame[rows, cols]


@pytest.mark.parametrize("position", CORNERS)
@pytest.mark.parametrize("value", [0, 128, 255])
def test_changes_its_corner_and_leaves_the_opposite_one(position: str, value: int) -> None:
    frame = np.full((360, 640, 3), value, np.uint8)
    marked = VisibleWatermark(position=position, scale=0.06).apply(frame)  # type: ignore[arg-type]
    assert marked.shape == frame.shape and marked.dtype == np.uint8
    assert np.array_equal(frame, np.full((360, 640, 3), value, np.uint8)), "input must not change"
    changed = np.abs(corner(marked, position).astype(int) - value)
    assert changed.max() > 60, "the label must stand out on this background"
    assert np.array_equal(corner(marked, OPPOSITE[position]), corner(frame, OPPOSITE[position]))


def test_overlay_is_rendered_once_per_frame_size() -> None:
    mark = VisibleWatermark()
    frame = np.zeros((1080, 1920, 3), np.uint8)
    first = mark.apply(frame)
    assert np.array_equal(mark.apply(frame), first)
    mark.apply(np.zeros((120, 200, 3), np.uint8))
    assert set(mark._overlays) == {(1080, 1920, "bottom-right"), (120, 200, "bottom-right")}


def test_scale_sets_the_label_height() -> None:
    frame = np.zeros((720, 1280, 3), np.uint8)
    small = VisibleWatermark(scale=0.03).apply(frame).any(axis=(1, 2)).sum()
    large = VisibleWatermark(scale=0.08).apply(frame).any(axis=(1, 2)).sum()
    assert large > 2 * small


def test_opacity_zero_leaves_the_frame_unchanged() -> None:
    frame = np.random.default_rng(0).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    assert np.array_equal(VisibleWatermark(opacity=0.0).apply(frame), frame)


def test_tiny_frames_still_work() -> None:
    frame = np.zeros((16, 16, 3), np.uint8)
    assert VisibleWatermark().apply(frame).shape == (16, 16, 3)


@pytest.mark.parametrize("kwargs", [{"position": "middle"}, {"opacity": 1.5}, {"scale": 0.0}, {"text": "  "}])
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        VisibleWatermark(**kwargs)  # type: ignore[arg-type]


def test_wrong_frame_type_is_refused() -> None:
    with pytest.raises(ValueError, match="uint8"):
        VisibleWatermark().apply(np.zeros((10, 10, 3), np.float32))
