"""Input files for tests, made here: images with Pillow, videos with PyAV, and the hostile ones by hand."""

from __future__ import annotations

import io
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image


def image_bytes(
    fmt: str = "PNG", size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 30, 30)
) -> bytes:
    """An image of one colour, with a white square in its top-left corner (so a rotation shows)."""
    image = Image.new("RGB", size, color)
    image.paste((255, 255, 255), (0, 0, size[0] // 4, size[1] // 4))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def jpeg_with_orientation(size: tuple[int, int], orientation: int) -> bytes:
    """A JPEG whose EXIF says to rotate it (6: 90 degrees clockwise, so a 64x32 image shows as 32x64)."""
    image = Image.new("RGB", size, (20, 120, 220))
    image.paste((255, 255, 255), (0, 0, size[0] // 4, size[1] // 4))
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif.tobytes())
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A few hundred bytes of PNG whose header claims a `width` x `height` canvas (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 4096, 9)  # the start of the pixel data: enough to look real
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


FAKE_PNG = b"\x89PNG\r\n\x1a\n" + b"this is not a PNG after its first eight bytes" * 4
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'


def gif_bytes() -> bytes:
    return image_bytes("GIF")


def video_file(
    path: Path,
    *,
    container: str = "mp4",
    codec: str = "libx264",
    size: tuple[int, int] = (160, 96),
    fps: int = 8,
    frames: int = 16,
    faststart: bool = False,
) -> Path:
    """A real video: `frames` frames of a moving gradient."""
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format=container, options=options) as out:
        stream = out.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        ramp = np.linspace(0, 255, size[0], dtype=np.uint8)
        for index in range(frames):
            rgb = np.zeros((size[1], size[0], 3), dtype=np.uint8)
            rgb[..., 0] = np.roll(ramp, index * 4)[None, :]
            rgb[..., 1] = (index * 16) % 256
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def video_bytes(tmp_path: Path, name: str = "clip.mp4", **options: object) -> bytes:
    """The bytes of `video_file(tmp_path / name, **options)`."""
    return video_file(tmp_path / name, **options).read_bytes()  # type: ignore[arg-type]
