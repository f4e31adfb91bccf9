"""An invisible 64-bit watermark in every frame's luma, and a detector that reads it from the video alone.

The payload (16-bit issuer, 16-bit key, 32-bit job hashes) gets a CRC-32 check code; the 96 bits are
spread over a 12x16 grid of cells fixed relative to the frame (so resizing keeps them in place), each
cell carrying one bit by quantisation index modulation (QIM) of its mean luma. QIM needs no original to
decode and ignores the picture's own content: the detector reads each cell's mean, asks which of the
two interleaved lattices it is nearer, and adds those soft votes over the bit's cells and the frames.

Every bit sits in two cells: one in the 8x12 core block (rows 2-9, columns 2-13) and one in the ring
around it, so a crop of up to 12% of the width or 16% of the height from any side leaves every bit a
whole cell. The detector first reads the grid over the whole frame; when that gives no payload it
searches crop hypotheses (each side cut by 0-12%, found to 0.125%) for those whose cell means sit on
the lattices, and decodes there. It reads the luma plane as decoded, with no colour conversion.

False positives. A payload is reported only when its CRC-32 matches. On a clean video each check of a
96-bit word (and of its complement: a drift of half a step flips every bit) matches with probability
2^-32, so by the union bound a clean video passes for marked with probability at most
(checks x 2) x 2^-32. `detect_file` checks the whole-frame grid at most 6 times (after 16, 32, 64, 128
and 256 frames, and at the end) and at most `CROP_CANDIDATES` (3) crop hypotheses once: 9 checks, so
below 18 x 2^-32 = 4.2e-9, under the 1e-6 goal. The search scores thousands of hypotheses, but only by
how near the cells lie to the lattices; the CRC is tried on the few best alone, which is what keeps the
bound.
"""

from __future__ import annotations

import hashlib
import itertools
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import av

GRID_ROWS, GRID_COLS = 12, 16
PAYLOAD_BITS = 64
CODE_BITS = PAYLOAD_BITS + 32
# Lattice step in luma levels: the mean of each cell moves by at most STEP/2 (uniform: MSE STEP^2/12).
STEP = 8.0
_SEED = 0x4B494E45  # "KINE": a fixed layout, so any detector can read any deployment's mark
# Luma weights (BT.601) on RGB; adding d to R, G and B adds d to this luma and leaves chroma alone.
_LUMA = np.array([0.299, 0.587, 0.114])
# Cells that stay whole under any crop the search covers: one copy of every bit lives here.
_CORE = (slice(2, 10), slice(2, 14))
# The crop search: each side cut by 0, 1, ..., 12% in the coarse pass, refined down to 0.125%.
CROP_MAX = 0.12
_COARSE = np.linspace(0.0, CROP_MAX, 13)
_REFINE_STEPS = (0.005, 0.0025, 0.00125)
CROP_CANDIDATES = 3  # crop hypotheses whose check code is tried
SEARCH_FRAMES = 32  # frames kept for the crop search
_COARSE_FRAMES = 2  # of which the coarse pass scores the first few
# Memory for frames kept as read (a copy is cheap, a downscale is not, and most videos never need the
# search); frames past it are kept downscaled.
KEEP_BYTES = 64 * 1024 * 1024
CHECKPOINTS = (16, 32, 64, 128, 256)  # `detect_file` stops at the first of these where the CRC matches


def _layout() -> tuple[np.ndarray, np.ndarray]:
    """Which code bit each cell carries (once in the core block, once in the ring) and its dither."""
    rng = np.random.default_rng(_SEED)
    core = np.zeros((GRID_ROWS, GRID_COLS), bool)
    core[_CORE] = True
    bit_of_cell = np.empty((GRID_ROWS, GRID_COLS), np.int64)
    bit_of_cell[core] = rng.permutation(CODE_BITS)
    bit_of_cell[~core] = rng.permutation(CODE_BITS)
    dither = rng.uniform(0, STEP, size=(GRID_ROWS, GRID_COLS))
    return bit_of_cell, dither


_BIT_OF_CELL, _DITHER = _layout()
_ALL = np.ones((GRID_ROWS, GRID_COLS), bool)


@dataclass(frozen=True, slots=True)
class Payload:
    """The 64 bits a video carries: 16-bit hashes of the issuer and the key, a 32-bit hash of the job."""

    issuer: int
    key: int
    job: int

    @classmethod
    def for_job(cls, issuer: str, key_id: str, job_id: str) -> Payload:
        """The payload naming `job_id`, made with `key_id` on the deployment called `issuer`."""
        return cls(issuer=short_hash(issuer, 16), key=short_hash(key_id, 16), job=short_hash(job_id, 32))

    def to_int(self) -> int:
        return (self.issuer << 48) | (self.key << 32) | self.job

    @classmethod
    def from_int(cls, value: int) -> Payload:
        return cls(issuer=value >> 48, key=(value >> 32) & 0xFFFF, job=value & 0xFFFFFFFF)

    @property
    def hex(self) -> str:
        return f"{self.to_int():016x}"


def short_hash(text: str, bits: int) -> int:
    """The first `bits` bits of SHA-256(text): how the payload names an issuer, a key or a job."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> (64 - bits)


def encode_bits(payload: Payload) -> np.ndarray:
    """The 96 code bits: the payload, then the CRC-32 of its 8 bytes."""
    raw = payload.to_int().to_bytes(8, "big")
    word = (int.from_bytes(raw, "big") << 32) | zlib.crc32(raw)
    return np.array([(word >> (CODE_BITS - 1 - i)) & 1 for i in range(CODE_BITS)], dtype=np.uint8)


def decode_bits(bits: np.ndarray) -> Payload | None:
    """The payload if the 96 bits' check code matches, else None."""
    word = 0
    for bit in bits.astype(int).tolist():
        word = (word << 1) | bit
    raw = (word >> 32).to_bytes(8, "big")
    if zlib.crc32(raw) != word & 0xFFFFFFFF:
        return None
    return Payload.from_int(int.from_bytes(raw, "big"))


def _edges(size: int, parts: int) -> np.ndarray:
    return np.linspace(0, size, parts + 1).round().astype(np.int64)


def _cell_sums(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sums of a uint8 (H, W) or (H, W, C) image over the grid's cells: (GRID_ROWS, GRID_COLS, C)."""
    height, width = image.shape[:2]
    flat = image.reshape(height, -1)
    # A band of up to 257 rows of uint8 sums exactly in uint16: half the memory traffic of uint32.
    dtype = np.uint16 if int(np.diff(rows).max()) <= 257 else np.uint32
    bands = np.stack([np.add.reduce(flat[a:b], axis=0, dtype=dtype) for a, b in itertools.pairwise(rows)])
    return np.add.reduceat(bands.reshape(GRID_ROWS, width, -1), cols[:-1], axis=1, dtype=np.int64)


def _cell_means(frame: np.ndarray) -> np.ndarray:
    """The mean luma of each grid cell of an (H, W, 3) uint8 RGB frame, as (GRID_ROWS, GRID_COLS)."""
    height, width = frame.shape[:2]
    rows, cols = _edges(height, GRID_ROWS), _edges(width, GRID_COLS)
    # Luma from the per-cell channel sums: no float copy of the frame.
    return (_cell_sums(frame, rows, cols) @ _LUMA) / np.outer(np.diff(rows), np.diff(cols))


class InvisibleWatermark:
    """Embeds one payload into (H, W, 3) uint8 RGB frames; a frame needs at least 16x12 pixels."""

    def __init__(self, payload: Payload) -> None:
        self.payload = payload
        bits = encode_bits(payload)[_BIT_OF_CELL]
        # Bit 1 uses the lattice shifted by half a step.
        self._offset = _DITHER + bits * (STEP / 2)

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """Return a copy of the frame with every cell's mean luma moved onto its bit's lattice."""
        height, width = frame.shape[:2]
        if height < GRID_ROWS or width < GRID_COLS:
            return frame.copy()  # too small to carry the mark
        means = _cell_means(frame)
        target = np.round((means - self._offset) / STEP) * STEP + self._offset
        delta = np.round(target - means).astype(np.int64)
        rows, cols = _edges(height, GRID_ROWS), _edges(width, GRID_COLS)
        # Each cell's shift spread over its pixels' R, G and B along a row: (GRID_ROWS, W * 3) uint8.
        spans = np.diff(cols) * frame.shape[2]
        up = np.repeat(np.clip(delta, 0, 255).astype(np.uint8), spans, axis=1)
        down = np.repeat(np.clip(-delta, 0, 255).astype(np.uint8), spans, axis=1)
        out = np.empty_like(frame)
        source, dest = frame.reshape(height, -1), out.reshape(height, -1)
        # Shift R, G and B alike (luma only), saturating in uint8: four vector passes per row band.
        for i in range(GRID_ROWS):
            band, rise, fall = dest[rows[i] : rows[i + 1]], up[i], down[i]
            np.minimum(source[rows[i] : rows[i + 1]], 255 - rise, out=band)
            band += rise
            np.maximum(band, fall, out=band)
            band -= fall
        return out

    def apply_all(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Mark each frame of a stream as it passes."""
        for frame in frames:
            yield self.apply(frame)


@dataclass(frozen=True, slots=True)
class Crop:
    """The part of the marked frame a video shows: fractions cut off each side (0 for the whole frame)."""

    left: float = 0.0
    right: float = 0.0
    top: float = 0.0
    bottom: float = 0.0


@dataclass(frozen=True, slots=True)
class Detection:
    """What the detector read: the payload if its check code matched, how sure, and from how many frames."""

    payload: Payload | None
    confidence: float  # mean |soft vote| per code bit, 0 (noise) to 1 (every cell on its lattice)
    frames: int
    # Where the grid was found: the whole frame, or the crop the search settled on.
    crop: Crop | None = None
    checks: int = 0  # check-code tests made: a clean video passes with probability <= checks * 2^-31

    @property
    def found(self) -> bool:
        return self.payload is not None


def _soft_votes(means: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """+1 on bit 0's lattice, -1 on bit 1's, 0 half way, per cell (0 where the cell is not whole)."""
    phase = (means - _DITHER) / STEP
    # Encoding shifts every mean by about the same amount (a level or two from the colour
    # conversions): both lattices together repeat every half step, so the doubled phase finds it.
    drift = np.angle(np.sum(np.exp(4j * np.pi * phase), where=whole)) / (4 * np.pi)
    return np.where(whole, np.cos(2 * np.pi * (phase - drift)), 0.0)


def _decode(votes: np.ndarray) -> Payload | None:
    """One check: the word the votes spell, or its complement (a drift of half a step flips every bit)."""
    bits = (votes < 0).astype(np.uint8)
    return decode_bits(bits) or decode_bits(1 - bits)


def _confidence(votes: np.ndarray, weight: np.ndarray) -> float:
    return round(float(np.sum(np.abs(votes)) / max(float(np.sum(weight)), 1.0)), 4)


def _integral(luma: np.ndarray) -> np.ndarray:
    """Summed-area table with a zero first row and column: S[y, x] = sum of luma[:y, :x]."""
    table = np.zeros((luma.shape[0] + 1, luma.shape[1] + 1))
    np.cumsum(np.cumsum(luma, axis=0), axis=1, out=table[1:, 1:])
    return table


def _axis(cuts: np.ndarray, parts: int, size: int, cells: slice) -> tuple[np.ndarray, np.ndarray]:
    """For (N, 2) cut fractions (low side, high side) of one axis: the edges of the grid's `cells` (of
    `parts`) in the shown image's pixels, (N, n + 1), clipped to it, and which of them lie wholly
    inside it, (N, n)."""
    start, stop, _ = cells.indices(parts)
    grid = np.arange(start, stop + 1) / parts
    low, high = cuts[:, :1], cuts[:, 1:]
    edges = np.clip((grid - low) / (1 - low - high) * size, 0, size)
    slack = 1e-9
    whole = (grid[:-1] >= low - slack) & (grid[1:] <= 1 - high + slack)
    return edges, whole


def _sample(tables: np.ndarray, at: np.ndarray, axis: int) -> np.ndarray:
    """Summed-area tables at fractional positions along `axis` (linear between whole pixels)."""
    last = tables.shape[axis] - 1
    base = np.minimum(np.floor(at).astype(np.int64), last - 1)
    shape = [1] * tables.ndim
    shape[axis] = -1
    lower, upper = np.take(tables, base, axis=axis), np.take(tables, base + 1, axis=axis)
    return lower + (upper - lower) * (at - base).reshape(shape)


def _crop_means(tables: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Cell means for every pair of column edges `xs` (Nx, m + 1) and row edges `ys` (Ny, n + 1), from
    (F, h + 1, w + 1) summed-area tables: (F, Ny, n, Nx, m)."""
    (ny, rows), (nx, cols) = ys.shape, xs.shape
    corners = _sample(_sample(tables, xs.ravel(), axis=2), ys.ravel(), axis=1)
    c = corners.reshape(len(tables), ny, rows, nx, cols)
    sums = c[:, :, 1:, :, 1:] - c[:, :, :-1, :, 1:] - c[:, :, 1:, :, :-1] + c[:, :, :-1, :, :-1]
    area = np.diff(ys, axis=1)[:, :, None, None] * np.diff(xs, axis=1)[None, None, :, :]
    return sums / np.maximum(area, 1e-9)


# One turn per STEP / 2 levels (the two lattices' common period) in 64 bins: a lookup instead of
# millions of complex exps.
_TURNS = 64
_UNIT = np.exp(2j * np.pi * (np.arange(_TURNS) + 0.5) / _TURNS)


def _fit(tables: np.ndarray, cuts_x: np.ndarray, cuts_y: np.ndarray, *, core: bool = False) -> np.ndarray:
    """How near the whole cells' means lie to the two lattices together, averaged over the frames'
    summed-area `tables`, for every pair of column cuts (Nx, 2) and row cuts (Ny, 2): (Ny, Nx). About
    1 when the grid is where the mark put it, about 1/sqrt(cells) when it is not. `core`: the core
    block's cells only (whole under every cut searched; half the work)."""
    rows, cols = _CORE if core else (slice(None), slice(None))
    xs, whole_x = _axis(cuts_x, GRID_COLS, tables.shape[2] - 1, cols)
    ys, whole_y = _axis(cuts_y, GRID_ROWS, tables.shape[1] - 1, rows)
    whole = whole_y[:, :, None, None] & whole_x[None, None, :, :]
    # The lattices repeat every STEP / 2 levels: the position in that period, in table bins.
    dither = (_DITHER[rows, cols] * (2 * _TURNS / STEP))[None, :, None, :] - 2 * _TURNS * STEP
    # Frames in chunks of about a million cell means: bounded memory, few Python steps.
    chunk = max(1, 1_000_000 // whole.size)
    total = np.zeros((len(cuts_y), len(cuts_x)))
    for start in range(0, len(tables), chunk):
        means = _crop_means(tables[start : start + chunk], xs, ys)
        turns = (means * (2 * _TURNS / STEP) - dither).astype(np.int64) % _TURNS
        total += np.abs((_UNIT[turns] * whole).sum(axis=(2, 4))).sum(axis=0)
    return total / (np.maximum(whole.sum(axis=(1, 3)), 1) * len(tables))


def _crop_candidates(tables: np.ndarray) -> list[Crop]:
    """The best few crops: a coarse grid of cuts scored on the core cells of a few frames, the best
    distinct seeds refined on all the kept frames."""
    pairs = np.array([(a, b) for a in _COARSE for b in _COARSE])
    fit = _fit(tables[:_COARSE_FRAMES], pairs, pairs, core=True)
    fit[0, 0] = -1.0  # the whole frame was tried already
    seeds: list[np.ndarray] = []
    for flat in np.argsort(fit, axis=None)[::-1]:
        row, col = np.unravel_index(flat, fit.shape)
        seed = np.concatenate([pairs[col], pairs[row]])
        # A near neighbour of a seed taken is the same peak seen again.
        if all(np.abs(seed - taken).max() > 2 * _COARSE[1] + 1e-9 for taken in seeds):
            seeds.append(seed)
        if len(seeds) == CROP_CANDIDATES:
            break
    return list(dict.fromkeys(_refine(tables, seed[:2], seed[2:]) for seed in seeds))


def _refine(tables: np.ndarray, cut_x: np.ndarray, cut_y: np.ndarray) -> Crop:
    """Walk each axis's pair of cuts to the best neighbour, in ever smaller steps."""
    moves = np.array([(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)])
    for step in _REFINE_STEPS:
        for _ in range(4):  # a few moves per step size at most
            xs = np.clip(cut_x + moves * step, 0, CROP_MAX + 0.02)
            ys = np.clip(cut_y + moves * step, 0, CROP_MAX + 0.02)
            row, col = np.unravel_index(np.argmax(_fit(tables, xs, ys)), (len(ys), len(xs)))
            if row == col == 4:  # no move beats staying put
                break
            cut_x, cut_y = xs[col], ys[row]
    return Crop(*(round(float(value), 4) for value in (*cut_x, *cut_y)))


def _crop_votes(tables: np.ndarray, crop: Crop) -> tuple[np.ndarray, np.ndarray]:
    """Soft votes per code bit under `crop` over the kept frames, and how many cells gave each."""
    everything = slice(None)
    xs, whole_x = _axis(np.array([[crop.left, crop.right]]), GRID_COLS, tables.shape[2] - 1, everything)
    ys, whole_y = _axis(np.array([[crop.top, crop.bottom]]), GRID_ROWS, tables.shape[1] - 1, everything)
    whole = whole_y[0][:, None] & whole_x[0][None, :]
    votes = np.zeros(CODE_BITS)
    for means in _crop_means(tables, xs, ys)[:, 0, :, 0, :]:
        votes += np.bincount(
            _BIT_OF_CELL.ravel(), weights=_soft_votes(means, whole).ravel(), minlength=CODE_BITS
        )
    weight = np.bincount(_BIT_OF_CELL.ravel(), weights=whole.ravel(), minlength=CODE_BITS)
    return votes, weight * len(tables)


class WatermarkDetector:
    """Accumulates soft votes over frames; `result()` decodes the 96 bits and checks their CRC, and
    searches crops when the whole frame gives nothing."""

    def __init__(self) -> None:
        self._votes = np.zeros(CODE_BITS)
        self._frames = 0
        self._checks = 0
        self._kept: list[_Kept] = []  # the first frames, for the crop search
        self._kept_bytes = 0

    def add(self, frame: np.ndarray) -> None:
        """Add one (H, W, 3) uint8 RGB frame's votes."""
        if frame.shape[0] < GRID_ROWS or frame.shape[1] < GRID_COLS:
            return
        self._add(frame, _cell_means(frame), 1.0, 0.0)

    def add_luma(self, luma: np.ndarray, *, video_range: bool = True) -> None:
        """Add one (H, W) uint8 luma plane's votes: Y of a decoded frame, 16-235 when `video_range`."""
        height, width = luma.shape
        if height < GRID_ROWS or width < GRID_COLS:
            return
        rows, cols = _edges(height, GRID_ROWS), _edges(width, GRID_COLS)
        scale, offset = (255 / 219, 16.0) if video_range else (1.0, 0.0)
        sums = _cell_sums(luma, rows, cols)[:, :, 0]
        self._add(luma, (sums / np.outer(np.diff(rows), np.diff(cols)) - offset) * scale, scale, offset)

    def _add(self, image: np.ndarray, means: np.ndarray, scale: float, offset: float) -> None:
        self._votes += np.bincount(
            _BIT_OF_CELL.ravel(), weights=_soft_votes(means, _ALL).ravel(), minlength=CODE_BITS
        )
        self._frames += 1
        if len(self._kept) < SEARCH_FRAMES:
            raw = self._kept_bytes + image.nbytes <= KEEP_BYTES
            self._kept.append(_Kept(image.copy() if raw else _downscale(image), scale, offset))
            self._kept_bytes += image.nbytes if raw else 0

    def whole_frame(self) -> Payload | None:
        """One check of the votes so far with the grid over the whole frame."""
        if self._frames == 0:
            return None
        self._checks += 1
        return _decode(self._votes)

    def result(self) -> Detection:
        """The payload if the votes decode to a word whose check code matches; else a crop search."""
        if self._frames == 0:
            return Detection(payload=None, confidence=0.0, frames=0)
        payload = self.whole_frame()
        weight = np.full(CODE_BITS, 2.0 * self._frames)
        confidence = _confidence(self._votes, weight)
        if payload is not None:
            return Detection(payload, confidence, self._frames, Crop(), self._checks)
        tables = np.stack([_integral(kept.luma()) for kept in self._kept])
        for crop in _crop_candidates(tables):
            votes, weight = _crop_votes(tables, crop)
            self._checks += 1
            payload = _decode(votes)
            if payload is not None:
                return Detection(payload, _confidence(votes, weight), self._frames, crop, self._checks)
        return Detection(None, confidence, self._frames, None, self._checks)


def _downscale(image: np.ndarray) -> np.ndarray:
    """Block means of an (H, W, C) or (H, W) uint8 image by a whole factor, to about 270 rows: (h, w, C)."""
    if image.ndim == 2:
        image = image[:, :, None]
    height, width = image.shape[:2]
    factor = max(1, min(height, width) // 270)
    rows, cols = height // factor, width // factor
    image = image[: rows * factor, : cols * factor]
    # Strided adds, rows then columns, rows in uint16 (exact up to factor 257): far cheaper than a
    # reshape-sum.
    summed = image[0::factor].astype(np.uint16 if factor <= 257 else np.uint32)
    for offset in range(1, factor):
        np.add(summed, image[offset::factor], out=summed)
    blocks = summed[:, 0::factor].astype(np.float32)
    for offset in range(1, factor):
        np.add(blocks, summed[:, offset::factor], out=blocks)
    return blocks / (factor * factor)


@dataclass(frozen=True, slots=True)
class _Kept:
    """A frame kept for the crop search: uint8 luma or RGB as read, or already downscaled (float)."""

    image: np.ndarray
    scale: float  # luma = (value - offset) * scale
    offset: float

    def luma(self) -> np.ndarray:
        """The downscaled luma, 0-255, as (h, w) float32."""
        small = _downscale(self.image) if self.image.dtype == np.uint8 else self.image
        luma = small @ _LUMA if small.shape[2] == 3 else small[:, :, 0]
        return ((luma - self.offset) * self.scale).astype(np.float32)


def detect_frames(frames: Iterable[np.ndarray]) -> Detection:
    """Read the watermark from RGB frames."""
    detector = WatermarkDetector()
    for frame in frames:
        detector.add(frame)
    return detector.result()


def detect_file(path: Path | str, max_frames: int = 300) -> Detection:
    """Read the watermark from a video file's luma (its first `max_frames` frames at most).

    Stops early once the whole-frame grid's check code matches at a checkpoint (16, 32, 64, ... frames).
    Raises `av.error.FFmpegError` (an `OSError` or `ValueError`) for a file that is not a video.
    """
    import av  # the API imports this module; PyAV loads only when it reads a file

    detector = WatermarkDetector()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if index >= max_frames:
                break
            luma = luma_plane(frame)
            if luma is None:
                detector.add(frame.to_ndarray(format="rgb24"))
            else:
                # MPEG (video) range unless the stream says JPEG (full) range or is a yuvj format.
                full = frame.color_range == 2 or frame.format.name.startswith("yuvj")
                detector.add_luma(luma, video_range=not full)
            if index + 1 in CHECKPOINTS and detector.whole_frame() is not None:
                break
    return detector.result()


def luma_plane(frame: av.VideoFrame) -> np.ndarray | None:
    """The Y plane of an 8-bit planar YUV frame as (H, W) uint8, without a colour conversion; else None."""
    name = frame.format.name
    if not (name.startswith(("yuv4", "yuvj4")) and name.endswith("p")):
        return None
    plane = frame.planes[0]
    return np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
