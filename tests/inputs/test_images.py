"""Input images: accepted by content (PNG, JPEG, WebP), refused otherwise, stored upright as a clean PNG."""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
import pytest
from PIL import Image

from app.errors import APIError, InputTooLarge, UnsupportedMediaType
from app.inputs.service import InputSource, receive
from tests.inputs import samples

IMAGE = frozenset({"image"})


def _received(
    data: bytes, settings: Any, *, param: str = "image", accepts: frozenset[Any] = IMAGE
) -> Image.Image:
    """What would be stored for `data`, opened."""
    source = InputSource(param=param, accepts=accepts, file=io.BytesIO(data))
    with receive(source, settings) as received:
        assert received.format.ext == "png" and received.type == "image"
        stored = Image.open(io.BytesIO(received.path.read_bytes()))
        stored.load()
        assert (stored.width, stored.height) == (received.width, received.height)
        return stored


def _refusal(
    data: bytes, settings: Any, *, param: str = "image", accepts: frozenset[Any] = IMAGE
) -> APIError:
    source = InputSource(param=param, accepts=accepts, file=io.BytesIO(data))
    with pytest.raises(APIError) as caught, receive(source, settings):
        pass
    assert caught.value.param == param
    return caught.value


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_png_jpeg_and_webp_are_stored_as_rgb_png(fmt: str, input_settings: Any) -> None:
    stored = _received(samples.image_bytes(fmt, size=(64, 48)), input_settings())
    assert stored.format == "PNG" and stored.mode == "RGB" and stored.size == (64, 48)
    assert stored.getpixel((60, 40)) == pytest.approx((200, 30, 30), abs=12)  # JPEG/WebP are lossy


def test_exif_orientation_is_applied_and_dropped(input_settings: Any) -> None:
    # 64x32 with orientation 6 (rotate 90 degrees clockwise): shown as 32x64, the white corner top-right.
    stored = _received(samples.jpeg_with_orientation((64, 32), 6), input_settings())
    assert stored.size == (32, 64)
    assert min(stored.getpixel((30, 1))) > 230 and max(stored.getpixel((1, 62))) < 230
    assert not stored.getexif()  # nothing left to rotate it twice


def test_transparent_pixels_become_white(input_settings: Any) -> None:
    image = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    assert _received(out.getvalue(), input_settings()).getpixel((5, 5)) == (255, 255, 255)


@pytest.mark.parametrize(
    ("data", "says"),
    [(samples.SVG, "SVG"), (samples.gif_bytes(), "GIF"), (b"just some text\n", "text")],
)
def test_other_formats_are_415_naming_what_they_are(data: bytes, says: str, input_settings: Any) -> None:
    error = _refusal(data, input_settings())
    assert isinstance(error, UnsupportedMediaType) and error.status_code == 415
    assert error.code == "unsupported_media_type" and says in error.message


def test_a_video_sent_as_an_image_is_refused(tmp_path: Any, input_settings: Any) -> None:
    error = _refusal(samples.video_bytes(tmp_path), input_settings(), param="image_url")
    assert error.code == "unsupported_media_type" and "MP4" in error.message


def test_png_signature_with_garbage_after_it_is_unreadable(input_settings: Any) -> None:
    error = _refusal(samples.FAKE_PNG, input_settings())
    assert (error.status_code, error.code) == (400, "input_unreadable")


def test_a_truncated_jpeg_is_unreadable(input_settings: Any) -> None:
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    out = io.BytesIO()
    noisy.save(out, format="JPEG")
    error = _refusal(out.getvalue()[: len(out.getvalue()) // 2], input_settings())
    assert error.code == "input_unreadable"


def test_an_empty_file_is_unreadable(input_settings: Any) -> None:
    assert _refusal(b"", input_settings()).code == "input_unreadable"


def test_over_the_byte_limit_is_413(input_settings: Any) -> None:
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    out = io.BytesIO()
    noisy.save(out, format="PNG")
    assert len(out.getvalue()) > 4096
    error = _refusal(out.getvalue(), input_settings(input_image_max_bytes=4096))
    assert isinstance(error, InputTooLarge) and (error.status_code, error.code) == (413, "input_too_large")


@pytest.mark.parametrize(("width", "height"), [(6000, 6000), (30000, 30000), (100_000, 100_000)])
def test_a_decompression_bomb_is_refused_from_its_header(
    width: int, height: int, input_settings: Any
) -> None:
    # 83 bytes claiming up to 10^10 pixels (30 GB decoded): refused before a pixel is decoded.
    data = samples.png_claiming(width, height)
    started = time.monotonic()
    error = _refusal(data, input_settings())
    assert time.monotonic() - started < 1.0
    assert (error.status_code, error.code) == (413, "input_too_large") and "pixels" in error.message


def test_the_pixel_limit_is_a_setting(input_settings: Any) -> None:
    data = samples.image_bytes("PNG", size=(64, 48))
    assert _refusal(data, input_settings(input_image_max_pixels=64 * 47)).code == "input_too_large"
    assert _received(data, input_settings(input_image_max_pixels=64 * 48)).size == (64, 48)
