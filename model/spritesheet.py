"""A spritesheet: a JPEG grid of frames sampled evenly from a finished MP4 (a scrubbing preview)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import av
from PIL import Image

SPRITESHEET_QUALITY = 80
MAX_TILES = 16
COLUMNS = 4
MAX_TILE_WIDTH = 256


@dataclass(frozen=True, slots=True)
class SpritesheetInfo:
    """The grid a spritesheet holds: `tiles` frames of `tile_width`x`tile_height`, `columns` per row."""

    tiles: int
    columns: int
    rows: int
    tile_width: int
    tile_height: int

    @property
    def width(self) -> int:
        return self.columns * self.tile_width

    @property
    def height(self) -> int:
        return self.rows * self.tile_height


def sample_indices(frames: int, tiles: int = MAX_TILES) -> list[int]:
    """`tiles` frame indices spread evenly over `frames` (every frame when there are fewer)."""
    if frames <= tiles:
        return list(range(frames))
    return [math.floor(i * frames / tiles) for i in range(tiles)]


def render_spritesheet(video_path: Path, frames: int, path: Path) -> SpritesheetInfo:
    """Decode the MP4 at `video_path` (`frames` long) and write a JPEG grid of evenly spaced frames.

    Holds only the sampled tiles, each scaled to at most MAX_TILE_WIDTH wide (aspect kept). The file is
    written next to `path` and renamed into place. Raises ValueError when the video has no frames.
    """
    wanted = set(sample_indices(frames))
    tiles: list[Image.Image] = []
    with av.open(str(video_path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if index in wanted:
                image = frame.to_image()
                scale = min(1.0, MAX_TILE_WIDTH / image.width)
                size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
                tiles.append(image if scale == 1.0 else image.resize(size, Image.Resampling.BILINEAR))
    if not tiles:
        raise ValueError(f"{video_path} has no frames to make a spritesheet of")
    columns = min(COLUMNS, len(tiles))
    info = SpritesheetInfo(
        tiles=len(tiles),
        columns=columns,
        rows=math.ceil(len(tiles) / columns),
        tile_width=tiles[0].width,
        tile_height=tiles[0].height,
    )
    sheet = Image.new("RGB", (info.width, info.height))
    for n, tile in enumerate(tiles):
        sheet.paste(tile, ((n % columns) * info.tile_width, (n // columns) * info.tile_height))
    partial = path.with_name(f".{path.name}.partial")
    try:
        sheet.save(partial, format="JPEG", quality=SPRITESHEET_QUALITY)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return info
