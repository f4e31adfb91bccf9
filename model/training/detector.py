"""A classical detector for shape clips: which colour, which shape, which motion, and does it hold together.

No learning involved: the background is the median colour of the frame borders, the shape's colour is
the named colour (`model.training.data.COLOURS`) most foreground pixels are nearest to, its outline is
the largest connected region of that colour in each frame (judged by where its area lies in its bounding
box, how much of the box it fills, how much of its convex hull, and how much of the box's corners: a
star's points leave gaps between them that a slightly softened outline keeps, though they no longer empty
its box; a square fills its corners even where its outline is ragged, as a circle never does), and its motion
comes from the track of that region's centroid and area.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

import numpy as np

from model.training.data import COLOURS

# How far (RGB distance) a pixel must be from the background to count as foreground.
FOREGROUND_DISTANCE = 60.0
# A point-up triangle has a quarter of its area in the top half of its bounding box; the others about half.
TRIANGLE_TOP_SHARE = 0.36
# Share of its bounding box a shape fills: star 0.4-0.5, circle 0.72-0.82, square 1.0.
STAR_FILL = 0.6
# Share of the bounding box's four corners (each a quarter of its width by a quarter of its height) a
# shape fills. Drawn at 64x64: circle 0.19-0.43, square 0.99-1.0; decoded by the VAE: circle up to 0.42,
# square from 0.77. A generated square with a ragged, soft outline fills only 0.72-0.88 of its box,
# as much as a circle, but its corners are still there.
SQUARE_CORNER_FILL = 0.6
# Share of its convex hull a region fills (solidity): a drawn star 0.58-0.64; the convex shapes 0.90-1.0
# at 64x64 (the hull of a pixel outline is a little larger than the shape). Under this, the outline has
# the gaps of a star's points even where softened edges fill its box past STAR_FILL.
STAR_SOLIDITY = 0.88
# Last-to-first area ratio beyond which a shape grows (or, inverted, shrinks); the data's is >= 2.5.
GROWTH_RATIO = 1.6
# Displacement under this share of the frame's side is "still"; the data's moves are >= 0.35.
STILL_SHARE = 0.12
# A region smaller than this (pixels) is noise, not a shape.
MIN_AREA = 12


@dataclass(frozen=True, slots=True)
class FrameBlob:
    """The tracked region in one frame."""

    area: int
    cx: float
    cy: float
    fill: float  # area / bounding-box area
    solidity: float  # the object's area / the area of its pixels' convex hull
    top_share: float  # share of the area in the top half of the bounding box
    corner_fill: float  # share of the bounding box's four corner quarters (by side) the area covers
    regions: int  # regions of the colour at least a quarter the size of the largest


@dataclass(frozen=True, slots=True)
class Detection:
    """What the detector read from a clip. `shape`/`motion` are None when no shape was found."""

    colour: str | None
    shape: str | None
    motion: str | None
    found_share: float  # frames in which the shape was found
    consistent: bool  # one object in (nearly) every frame, of stable (or steadily changing) size, no jumps
    blobs: tuple[FrameBlob | None, ...]


def background_colour(frames: np.ndarray) -> np.ndarray:
    """The median RGB of all frames' border pixels."""
    edges = (frames[:, 0], frames[:, -1], frames[:, :, 0], frames[:, :, -1])
    border = np.concatenate([edge.reshape(-1, 3) for edge in edges])
    return np.median(border.astype(np.float32), axis=0)


def nearest_colour(pixels: np.ndarray, names: list[str]) -> np.ndarray:
    """Index into `names` of the named colour nearest each (N, 3) pixel."""
    palette = np.array([COLOURS[name] for name in names], dtype=np.float32)
    distance = ((pixels[:, None, :].astype(np.float32) - palette[None]) ** 2).sum(-1)
    return distance.argmin(axis=1)


def label_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected regions of a 2-D boolean mask: (labels with 0 as background, count)."""
    labels = np.zeros(mask.shape, dtype=np.int32)
    height, width = mask.shape
    count = 0
    for y, x in zip(*np.nonzero(mask), strict=True):
        if labels[y, x]:
            continue
        count += 1
        labels[y, x] = count
        queue = deque([(int(y), int(x))])
        while queue:
            cy, cx = queue.popleft()
            for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = count
                    queue.append((ny, nx))
    return labels, count


def shape_of(fill: float, top_share: float, solidity: float, corner_fill: float) -> str:
    """The shape with this bounding-box fill, share of area in the box's top half, hull solidity and
    share of the box's corners filled."""
    if top_share < TRIANGLE_TOP_SHARE:
        return "triangle"
    if fill < STAR_FILL or solidity < STAR_SOLIDITY:
        return "star"
    return "square" if corner_fill >= SQUARE_CORNER_FILL else "circle"


def corner_fill(box: np.ndarray) -> float:
    """The share of the four corners (a quarter of its sides each) of a bounding-box mask it covers."""
    ch, cw = max(1, round(box.shape[0] / 4)), max(1, round(box.shape[1] / 4))
    corners = (box[:ch, :cw], box[:ch, -cw:], box[-ch:, :cw], box[-ch:, -cw:])
    return sum(int(c.sum()) for c in corners) / sum(c.size for c in corners)


def hull_area(xs: np.ndarray, ys: np.ndarray) -> float:
    """Area of the convex hull of the pixels at (xs, ys), each taken as its unit square."""
    corners = {
        (int(x) + dx, int(y) + dy) for x, y in zip(xs, ys, strict=True) for dx in (0, 1) for dy in (0, 1)
    }
    points = sorted(corners)

    def cross(o: tuple[int, int], a: tuple[int, int], b: tuple[int, int]) -> int:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    # Andrew's monotone chain: the lower and upper hulls, each turning one way only.
    hull: list[tuple[int, int]] = []
    for chain in (points, points[::-1]):
        start = len(hull)
        for point in chain:
            while len(hull) - start >= 2 and cross(hull[-2], hull[-1], point) <= 0:
                hull.pop()
            hull.append(point)
        hull.pop()  # each chain's last point starts the other
    x = np.array([p[0] for p in hull], dtype=np.float64)
    y = np.array([p[1] for p in hull], dtype=np.float64)
    return float(0.5 * abs(x @ np.roll(y, 1) - y @ np.roll(x, 1)))  # the shoelace formula


def colour_mask(frame: np.ndarray, background: np.ndarray, colour: str) -> np.ndarray:
    """Pixels at least half way from the background to `colour`, and nearer that line than any other's.

    A pixel mixing the background and a colour (an anti-aliased or blurred edge) lies on the line
    between them, so it is judged by the nearest such line, not by the nearest colour.
    """
    names = shape_colours(background)
    if colour not in names:
        names.append(colour)
    offset = frame.astype(np.float32).reshape(-1, 3) - background
    distances, alphas = [], []
    for name in names:
        direction = np.array(COLOURS[name], dtype=np.float32) - background
        alpha = np.clip((offset @ direction) / max(float(direction @ direction), 1.0), 0.0, 1.0)
        distances.append(np.linalg.norm(offset - alpha[:, None] * direction, axis=-1))
        alphas.append(alpha)
    index = names.index(colour)
    nearest = np.argmin(np.stack(distances), axis=0) == index
    return (nearest & (alphas[index] > 0.5)).reshape(frame.shape[:2])


def shape_colours(background: np.ndarray) -> list[str]:
    """The named colours a shape can have on this background (not the background's own colour)."""
    return [n for n in COLOURS if np.linalg.norm(np.array(COLOURS[n]) - background) > FOREGROUND_DISTANCE]


def track_blob(frame: np.ndarray, background: np.ndarray, colour: str) -> FrameBlob | None:
    """The largest region of `colour` in one frame, or None if there is none big enough."""
    labels, count = label_regions(colour_mask(frame, background, colour))
    if count == 0:
        return None
    areas = np.bincount(labels.ravel())[1:]
    biggest = int(areas.argmax())
    if areas[biggest] < MIN_AREA:
        return None
    region = labels == biggest + 1
    ys, xs = np.nonzero(region)
    top, bottom = int(ys.min()), int(ys.max())
    box = region[top : bottom + 1, int(xs.min()) : int(xs.max()) + 1]
    # The hull is taken of the whole object the region belongs to: everything at least half way from the
    # background, connected to it. A tint at its rim (read as another colour) is not a gap in the outline.
    reach = 0.5 * float(np.linalg.norm(np.array(COLOURS[colour], dtype=np.float32) - background))
    objects, _ = label_regions(np.linalg.norm(frame.astype(np.float32) - background, axis=-1) > reach)
    overlap = np.bincount(objects[region], minlength=2)[1:]
    ob_ys, ob_xs = np.nonzero(objects == int(overlap.argmax()) + 1) if overlap.any() else (ys, xs)
    return FrameBlob(
        area=int(areas[biggest]),
        cx=float(xs.mean()),
        cy=float(ys.mean()),
        fill=float(areas[biggest]) / box.size,
        solidity=len(ob_xs) / hull_area(ob_xs, ob_ys),
        top_share=float((ys < (top + bottom + 1) / 2).mean()),
        corner_fill=corner_fill(box),
        regions=int((areas >= max(MIN_AREA, areas[biggest] / 4)).sum()),
    )


def dominant_colour(frames: np.ndarray, background: np.ndarray) -> str | None:
    """The named colour most foreground pixels are nearest to (None: no foreground)."""
    pixels = frames.reshape(-1, 3).astype(np.float32)
    foreground = pixels[np.linalg.norm(pixels - background, axis=1) > FOREGROUND_DISTANCE]
    if len(foreground) < MIN_AREA:
        return None
    names = shape_colours(background)
    votes = np.bincount(nearest_colour(foreground, names), minlength=len(names))
    return names[int(votes.argmax())]


def motion_of(blobs: list[FrameBlob], side: int) -> str:
    """left/right/up/down/growing/shrinking/still from the first and last few frames of a track."""
    k = max(1, min(3, len(blobs) // 4))
    first, last = blobs[:k], blobs[-k:]
    area_ratio = float(np.mean([b.area for b in last])) / max(float(np.mean([b.area for b in first])), 1.0)
    if area_ratio > GROWTH_RATIO:
        return "growing"
    if area_ratio < 1 / GROWTH_RATIO:
        return "shrinking"
    dx = np.mean([b.cx for b in last]) - np.mean([b.cx for b in first])
    dy = np.mean([b.cy for b in last]) - np.mean([b.cy for b in first])
    if max(abs(dx), abs(dy)) < STILL_SHARE * side:
        return "still"
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def is_consistent(blobs: list[FrameBlob | None], motion: str, side: int) -> bool:
    """One object in at least 90% of frames, a size that is stable (or changes steadily), no jumps."""
    found = [b for b in blobs if b is not None]
    if len(found) < 0.9 * len(blobs):
        return False
    if sum(b.regions == 1 for b in found) < 0.9 * len(found):
        return False
    areas = np.array([b.area for b in found], dtype=np.float64)
    if motion in ("growing", "shrinking"):
        # Steady: the area's rank order follows time (Spearman's rho, no ties expected to matter).
        ranks = areas.argsort().argsort()
        rho = float(np.corrcoef(ranks, np.arange(len(areas)))[0, 1]) if len(areas) > 2 else 1.0
        steady = rho > 0.8 if motion == "growing" else rho < -0.8
    else:
        steady = areas.max() <= 1.5 * areas.min()
    jumps = [np.hypot(b.cx - a.cx, b.cy - a.cy) for a, b in itertools.pairwise(found)]
    return steady and (not jumps or max(jumps) <= 0.2 * side)


def detect(frames: np.ndarray, colour: str | None = None) -> Detection:
    """Read colour, shape and motion from (T, H, W, 3) uint8 frames.

    With `colour`, the region of that colour is tracked (for clips with two shapes), and the reported
    colour is still the dominant one; without it, the dominant colour's region is.
    """
    background = background_colour(frames)
    dominant = dominant_colour(frames, background)
    tracked = colour or dominant
    if tracked is None:
        return Detection(None, None, None, 0.0, False, tuple(None for _ in frames))
    blobs = [track_blob(frame, background, tracked) for frame in frames]
    found = [b for b in blobs if b is not None]
    if not found:
        return Detection(dominant, None, None, 0.0, False, tuple(blobs))
    # Medians over frames: a frame or two of a blurred outline does not flip the shape.
    fill = float(np.median([b.fill for b in found]))
    solidity = float(np.median([b.solidity for b in found]))
    corners = float(np.median([b.corner_fill for b in found]))
    shape = shape_of(fill, float(np.median([b.top_share for b in found])), solidity, corners)
    side = min(frames.shape[1], frames.shape[2])
    motion = motion_of(found, side)
    return Detection(
        colour=dominant,
        shape=shape,
        motion=motion,
        found_share=len(found) / len(blobs),
        consistent=is_consistent(blobs, motion, side),
        blobs=tuple(blobs),
    )
