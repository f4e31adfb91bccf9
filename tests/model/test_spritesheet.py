"""render_spritesheet: a JPEG grid of evenly spaced frames read back from an encoded MP4."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.export import render_mp4
from model.spritesheet import MAX_TILES, render_spritesheet, sample_indices


def _frames(count: int, width: int, height: int) -> list[np.ndarray]:
    """Flat frames whose brightness is the frame's index x 10, so each tile says which frame it shows."""
    return [np.full((height, width, 3), 10 * i, dtype=np.uint8) for i in range(count)]


def test_sample_indices_spread_over_the_video() -> None:
    assert sample_indices(5) == [0, 1, 2, 3, 4]
    picked = sample_indices(64)
    assert len(picked) == MAX_TILES and picked[0] == 0 and picked[-1] == 60
    assert picked == sorted(set(picked))


def test_grid_of_frames_in_order(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    info = render_mp4(_frames(24, 64, 48), video, fps=8)
    sheet = tmp_path / "sprites.jpg"
    grid = render_spritesheet(video, info.frames, sheet)
    assert (grid.tiles, grid.columns, grid.rows, grid.tile_width, grid.tile_height) == (16, 4, 4, 64, 48)
    image = Image.open(sheet)
    assert image.format == "JPEG" and image.size == (256, 192)
    pixels = np.asarray(image.convert("L"), dtype=float)
    # Tile n shows frame sample_indices(24)[n]: the tiles get brighter left to right, top to bottom.
    means = [
        pixels[r * 48 + 8 : r * 48 + 40, c * 64 + 8 : c * 64 + 56].mean() for r in range(4) for c in range(4)
    ]
    expected = [10 * i for i in sample_indices(24)]
    assert means == pytest.approx(expected, abs=6)


def test_wide_frames_are_scaled_down_to_tiles(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    info = render_mp4(_frames(3, 512, 256), video, fps=8)
    grid = render_spritesheet(video, info.frames, tmp_path / "s.jpg")
    assert (grid.tiles, grid.columns, grid.rows, grid.tile_width, grid.tile_height) == (3, 3, 1, 256, 128)
    assert Image.open(tmp_path / "s.jpg").size == (768, 128)
