"""An invisible 64-bit watermark in every frame's luma, and a detector that reads it from the video alone.

The payload (16-bit issuer, 16-bit key, 32-bit job hashes) gets a CRC-32 check code; the 96 bits are
spread over a grid of cells fixed relative to the frame (so resizing keeps them in place), each cell
carrying one bit by quantisation index modulation (QIM) of its mean luma. QIM needs no original to
decode and ignores the picture's own content: the detector reads each cell's mean, asks which of the
two interleaved lattices it is nearer, and adds those soft votes over the bit's cells and all frames.
A payload is reported only when its CRC matches, so a clean video passes for marked with probability
2^-31 (the
detector tries a word and its complement).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GRID_ROWS, GRID_COLS = 12, 16
PAYLOAD_BITS = 64
CODE_BITS = PAYLOAD_BITS + 32
# Lattice step in luma levels: the mean of each cell moves by at most STEP/2 (uniform: MSE STEP^2/12).
STEP = 8.0
_SEED = 0x4B494E45  # "KINE": a fixed layout, so any detector can read any deployment's mark
# Luma weights (BT.601) on RGB; adding d to R, G and B adds d to this luma and leaves chroma alone.
_LUMA = np.array([0.299, 0.587, 0.114])


def _layout() -> tuple[np.ndarray, np.ndarray]:
    """Which code bit each cell carries (each bit in 2 cells at random places) and its dither."""
    rng = np.random.default_rng(_SEED)
    cells = GRID_ROWS * GRID_COLS
    bit_of_cell = rng.permutation(np.arange(cells) % CODE_BITS).reshape(GRID_ROWS, GRID_COLS)
    dither = rng.uniform(0, STEP, size=(GRID_ROWS, GRID_COLS))
    return bit_of_cell, dither


_BIT_OF_CELL, _DITHER = _layout()


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


def _cell_means(frame: np.ndarray) -> np.ndarray:
    """The mean luma of each grid cell of an (H, W, 3) uint8 RGB frame, as (GRID_ROWS, GRID_COLS)."""
    height, width = frame.shape[:2]
    rows, cols = _edges(height, GRID_ROWS), _edges(width, GRID_COLS)
    # Integer sums of the uint8 pixels (columns first: the larger reduction on contiguous memory), then
    # luma from the per-cell channel sums: a third of the cost of converting the frame to float.
    sums = np.add.reduceat(np.add.reduceat(frame, cols[:-1], axis=1, dtype=np.uint32), rows[:-1], axis=0)
    return (sums @ _LUMA) / np.outer(np.diff(rows), np.diff(cols))


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
        delta = np.round(target - means).astype(int)
        rows, cols = _edges(height, GRID_ROWS), _edges(width, GRID_COLS)
        out = frame.copy()
        # Shift R, G and B alike (luma only), saturating in place in uint8: no wider copy of the frame.
        for (i, j), shift in np.ndenumerate(delta):
            cell = out[rows[i] : rows[i + 1], cols[j] : cols[j + 1]]
            if shift > 0:
                np.minimum(cell, np.uint8(255 - shift), out=cell)
                cell += np.uint8(shift)
            elif shift < 0:
                np.maximum(cell, np.uint8(-shift), out=cell)
                cell -= np.uint8(-shift)
        return out

    def apply_all(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Mark each frame of a stream as it passes."""
        for frame in frames:
            yield self.apply(frame)


@dataclass(frozen=True, slots=True)
class Detection:
    """What the detector read: the payload if its check code matched, how sure, and from how many frames."""

    payload: Payload | None
    confidence: float  # mean |soft vote| per code bit, 0 (noise) to 1 (every cell on its lattice)
    frames: int

    @property
    def found(self) -> bool:
        return self.payload is not None


class WatermarkDetector:
    """Accumulates soft votes over frames; `result()` decodes the 96 bits and checks their CRC."""

    def __init__(self) -> None:
        self._votes = np.zeros(CODE_BITS)
        self._frames = 0

    def add(self, frame: np.ndarray) -> None:
        """Add one (H, W, 3) uint8 RGB frame's votes."""
        if frame.shape[0] < GRID_ROWS or frame.shape[1] < GRID_COLS:
            return
        phase = (_cell_means(frame) - _DITHER) / STEP
        # Encoding shifts every mean by about the same amount (a level or two from the colour
        # conversions): both lattices together repeat every half step, so the doubled phase finds it.
        drift = np.angle(np.mean(np.exp(4j * np.pi * phase))) / (4 * np.pi)
        # +1 on bit 0's lattice, -1 on bit 1's, 0 half way: a vote weighted by how near it lies.
        soft = np.cos(2 * np.pi * (phase - drift))
        self._votes += np.bincount(_BIT_OF_CELL.ravel(), weights=soft.ravel(), minlength=CODE_BITS)
        self._frames += 1

    def result(self) -> Detection:
        """The payload if the votes decode to a word whose check code matches."""
        if self._frames == 0:
            return Detection(payload=None, confidence=0.0, frames=0)
        cells_per_bit = GRID_ROWS * GRID_COLS / CODE_BITS
        confidence = float(np.mean(np.abs(self._votes)) / (cells_per_bit * self._frames))
        bits = (self._votes < 0).astype(np.uint8)
        # A drift of half a step swaps the lattices, so every bit flips: the check code tells which.
        payload = decode_bits(bits) or decode_bits(1 - bits)
        return Detection(payload=payload, confidence=round(confidence, 4), frames=self._frames)


def detect_frames(frames: Iterable[np.ndarray]) -> Detection:
    """Read the watermark from RGB frames."""
    detector = WatermarkDetector()
    for frame in frames:
        detector.add(frame)
    return detector.result()


def detect_file(path: Path | str, max_frames: int = 300) -> Detection:
    """Read the watermark from a video file (its first `max_frames` frames).

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
            detector.add(frame.to_ndarray(format="rgb24"))
    return detector.result()
