"""A visible "AI-generated" label burned into every frame of a video."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Corner = Literal["top-left", "top-right", "bottom-left", "bottom-right"]
CORNERS: tuple[str, ...] = get_args(Corner)


@dataclass(frozen=True, slots=True)
class _Overlay:
    """The label for one frame size: where it goes and its colour and alpha, ready to blend."""

    top: int
    left: int
    color: np.ndarray  # (h, w, 3) float32, premultiplied by alpha
    alpha: np.ndarray  # (h, w, 1) float32 in [0, 1], already scaled by the opacity


@dataclass(slots=True)
class VisibleWatermark:
    """Light text with a dark outline in one corner, alpha-blended onto frames.

    `scale` is the text height as a fraction of the frame height; `opacity` scales the label's alpha.
    The label is rendered once per frame size and cached, so `apply` is a blend of a small region.
    """

    text: str = "AI-generated"
    opacity: float = 0.8
    position: Corner = "bottom-right"
    scale: float = 0.04
    # Moving mark: every `move_every` frames the label goes on to the next corner; 0: it stays put.
    move_every: int = 0
    _overlays: dict[tuple[int, int, str], _Overlay] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.position not in CORNERS:
            raise ValueError(f"position must be one of {', '.join(CORNERS)}; got {self.position!r}")
        if not 0.0 <= self.opacity <= 1.0:
            raise ValueError(f"opacity must be in [0, 1]; got {self.opacity}")
        if not 0.0 < self.scale <= 1.0:
            raise ValueError(f"scale must be in (0, 1]; got {self.scale}")
        if not self.text.strip():
            raise ValueError("watermark text must not be empty")

    def apply(self, frame: np.ndarray, index: int = 0) -> np.ndarray:
        """Return a copy of an (H, W, 3) uint8 frame with the label blended into its corner.

        `index` is the frame's number in the video; it picks the corner of a moving mark.
        """
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 frame; got {frame.shape} {frame.dtype}")
        height, width = frame.shape[:2]
        corner: str = self.position
        if self.move_every > 0:
            corner = CORNERS[(CORNERS.index(self.position) + index // self.move_every) % len(CORNERS)]
        overlay = self._overlays.get((height, width, corner))
        if overlay is None:
            overlay = self._overlays[(height, width, corner)] = self._render(height, width, corner)
        out = frame.copy()
        h, w = overlay.alpha.shape[:2]
        region = out[overlay.top : overlay.top + h, overlay.left : overlay.left + w]
        # Float math on the label's box only: about 2 ms per 1080p frame, most of it the copy.
        blended = region * (1.0 - overlay.alpha) + overlay.color
        region[:] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        return out

    def _render(self, height: int, width: int, corner: str) -> _Overlay:
        """Draw the label with Pillow for a frame of this size and place it in the chosen corner."""
        font_size = max(8, round(self.scale * height))
        font = ImageFont.load_default(size=font_size)
        stroke = max(1, round(font_size / 10))
        probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
        box = probe.textbbox((0, 0), self.text, font=font, stroke_width=stroke)
        left, top, right, bottom = (
            math.floor(box[0]),
            math.floor(box[1]),
            math.ceil(box[2]),
            math.ceil(box[3]),
        )
        shadow = max(1, round(font_size / 16))
        label = Image.new("RGBA", (right - left + shadow, bottom - top + shadow), (0, 0, 0, 0))
        draw = ImageDraw.Draw(label)
        # A soft drop shadow under a dark outline keeps light text readable on white and on black.
        draw.text(
            (shadow - left, shadow - top),
            self.text,
            font=font,
            fill=(0, 0, 0, 128),
            stroke_width=stroke,
            stroke_fill=(0, 0, 0, 128),
        )
        draw.text(
            (-left, -top),
            self.text,
            font=font,
            fill=(245, 245, 245, 255),
            stroke_width=stroke,
            stroke_fill=(16, 16, 16, 255),
        )
        rgba = np.asarray(label, dtype=np.float32)
        margin = max(2, round(0.02 * min(height, width)))
        # Tiny frames: clip the label rather than fail; the corner still carries most of it.
        rgba = rgba[: max(1, height - 2 * margin), : max(1, width - 2 * margin)]
        h, w = rgba.shape[:2]
        top_px = margin if corner.startswith("top") else height - margin - h
        left_px = margin if corner.endswith("left") else width - margin - w
        alpha = rgba[:, :, 3:4] / 255.0 * self.opacity
        return _Overlay(top=max(0, top_px), left=max(0, left_px), color=rgba[:, :, :3] * alpha, alpha=alpha)
