"""Input images: decoded in full under a pixel limit, EXIF orientation applied, re-encoded as a clean PNG."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from app.errors import InputTooLarge, InvalidRequest
from app.inputs.media import JPEG, PNG, WEBP, MediaFormat

# Pillow's decoders for the accepted formats; no other plugin ever sees the bytes.
_PIL_FORMATS = {PNG: "PNG", JPEG: "JPEG", WEBP: "WEBP"}
_WHITE = (255, 255, 255)


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """The cleaned image: its size after the EXIF rotation."""

    width: int
    height: int


def unreadable(param: str, what: str, detail: object) -> InvalidRequest:
    """The 400 for an input whose content claims a format but does not decode as one."""
    return InvalidRequest(f"{param} is not a readable {what}: {detail}", param=param, code="input_unreadable")


def clean_image(source: Path, media: MediaFormat, dest: Path, *, max_pixels: int, param: str) -> ImageInfo:
    """Decode `source` (already recognised as `media`) and write it to `dest` as an RGB PNG, upright.

    The canvas size is checked from the header before any pixel is decoded, so a small file that claims
    a huge canvas (a decompression bomb) is refused without the memory it asks for.
    """
    name = _PIL_FORMATS[media]
    try:
        # Pillow warns past its own limit and raises past twice that: both are ours to report.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source, formats=[name])
        with image:
            width, height = image.size
            if width * height > max_pixels:
                raise InputTooLarge(
                    f"{param} is {width}x{height} ({width * height} pixels); "
                    f"the limit is {max_pixels} pixels.",
                    param=param,
                )
            image.load()
            upright = ImageOps.exif_transpose(image)
            # Light compression: a working copy for the worker, written while the caller waits.
            _flatten(upright).save(dest, format="PNG", compress_level=1)
            return ImageInfo(width=upright.width, height=upright.height)
    except Image.DecompressionBombError as exc:
        raise InputTooLarge(f"{param} has too many pixels: {exc}", param=param) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Truncated data, a bad chunk CRC, a header that lies: Pillow raises one of these.
        raise unreadable(param, name, exc) from exc


def _flatten(image: Image.Image) -> Image.Image:
    """RGB; transparent pixels over white, so what they show does not depend on hidden colour values."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
