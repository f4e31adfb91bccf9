"""Input images and video frames: sanity checks always, and an image classifier over real HTTP when set.

The classifier here is a small HTTP server (a real boundary): it decodes each JPEG it is sent and
flags the mostly red ones as violence, as a stand-in for a real image moderation model.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import numpy as np
import pytest
from PIL import Image

from app.config import Settings
from app.errors import APIError, ServiceUnavailable
from app.moderation.media import SAMPLED_FRAMES, SENT_SIDE, InputRefused, check_input_frames


class _ImageClassifier(BaseHTTPRequestHandler):
    """Flags each mostly red image (violence); answers one result per image, or one for all when told."""

    requests: list[dict[str, Any]] = []
    status = 200
    delay_s = 0.0
    combined = False

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        images = []
        for part in body["input"]:
            assert part["type"] == "image_url"
            data = part["image_url"]["url"].removeprefix("data:image/jpeg;base64,")
            images.append(Image.open(io.BytesIO(base64.b64decode(data))))
        type(self).requests.append({"images": images, "authorization": self.headers.get("Authorization")})
        threading.Event().wait(type(self).delay_s)
        red = [bool(np.mean(np.asarray(image.convert("RGB"))[:, :, 0]) > 150) for image in images]
        flags = [any(red)] if type(self).combined else red
        results = [{"flagged": flag, "categories": {"violence": flag, "sexual": False}} for flag in flags]
        payload = json.dumps({"id": "modr-1", "results": results}).encode()
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def classifier_url() -> Iterator[str]:
    """A real HTTP image classifier on a free local port."""
    _ImageClassifier.requests = []
    _ImageClassifier.status, _ImageClassifier.delay_s, _ImageClassifier.combined = 200, 0.0, False
    server = HTTPServer(("127.0.0.1", 0), _ImageClassifier)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1/moderations"
    server.shutdown()
    server.server_close()


def colour(rgb: tuple[int, int, int], height: int = 96, width: int = 160) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (height, width, 3)).copy()


def refusal(frames: Any, settings: Settings, **options: Any) -> InputRefused:
    with pytest.raises(InputRefused) as raised:
        check_input_frames(frames, settings, **options)
    return raised.value


@pytest.mark.parametrize(
    ("frames", "says"),
    [
        ([], "has no frames"),
        ([colour((10, 10, 10)).astype(np.float32)], "float32 samples"),
        ([colour((10, 10, 10))[:, :, 0]], "not (height, width, 3)"),
        ([np.zeros((96, 160, 4), np.uint8)], "not (height, width, 3)"),
        ([colour((10, 10, 10), 8, 8)], "under 16 pixels"),
        (
            [colour((10, 10, 10)), colour((10, 10, 10), 96, 128)],
            "Frame 1 of the video is 128x96, the first was 160x96",
        ),
        (["not a frame"], "is a str"),
    ],
)
def test_frames_that_are_not_a_decoded_picture_are_refused(frames: list[Any], says: str) -> None:
    refused = refusal(frames, Settings(), param="video")
    assert (refused.code, refused.categories, refused.source, refused.param) == (
        "moderation_blocked",
        ["invalid_frames"],
        "sanity",
        "video",
    )
    assert says in refused.message
    # The API's error shape, for the gateway; the worker fails the job with the same code.
    assert isinstance(refused, APIError) and refused.body()["error"]["categories"] == ["invalid_frames"]


def test_oversized_frames_are_refused_and_blank_ones_pass_without_a_classifier() -> None:
    small = Settings(input_image_max_pixels=10_000, input_video_max_pixels=10_000)
    assert "over 10000 pixels" in refusal([colour((0, 0, 0))], small).message
    # A black first frame is a fade-in, not a fault; with no classifier URL nothing judges content.
    check_input_frames([colour((0, 0, 0))], Settings())
    check_input_frames([colour((220, 10, 10))], Settings())


def test_the_classifier_refuses_with_its_categories_and_passes_clean_frames(classifier_url: str) -> None:
    settings = Settings(moderation_image_url=classifier_url, moderation_api_key="sk-mod")
    check_input_frames([colour((40, 90, 200))], settings, param="image")
    [asked] = _ImageClassifier.requests
    assert asked["authorization"] == "Bearer sk-mod" and len(asked["images"]) == 1

    refused = refusal([colour((230, 20, 20))], settings, param="image")
    assert (refused.categories, refused.source, refused.param) == (["violence"], "classifier", "image")
    assert "refused by this deployment's content policy (violence)" in refused.message

    _ImageClassifier.combined = True  # OpenAI's answer to a multi-part input: one result for all
    video = [colour((40, 90, 200))] * 5 + [colour((230, 20, 20))]
    assert refusal(video, settings).categories == ["violence"]


def test_a_long_video_is_sampled_evenly_as_small_jpegs_from_a_stream(classifier_url: str) -> None:
    settings = Settings(moderation_image_url=classifier_url)
    # 300 big frames, each numbered by its brightness, passed as a generator: held a few at a time.
    frames = (colour((0, index * 255 // 299, 0), 720, 1280) for index in range(300))
    check_input_frames(frames, settings)
    [asked] = _ImageClassifier.requests
    images = asked["images"]
    assert len(images) == SAMPLED_FRAMES
    assert all(max(image.size) <= SENT_SIDE for image in images)
    seen = [round(float(np.mean(np.asarray(image.convert("RGB"))[:, :, 1]))) for image in images]
    assert seen[0] <= 2 and seen == sorted(seen) and seen[-1] >= 200, seen  # first to near the end


@pytest.mark.parametrize("fail_open", [False, True])
def test_a_classifier_that_fails_or_times_out_refuses_unless_fail_open(
    classifier_url: str, fail_open: bool
) -> None:
    settings = Settings(
        moderation_image_url=classifier_url, moderation_image_timeout_s=0.2, moderation_fail_open=fail_open
    )
    for status, delay in ((500, 0.0), (200, 1.0)):
        _ImageClassifier.status, _ImageClassifier.delay_s = status, delay
        if fail_open:
            check_input_frames([colour((230, 20, 20))], settings)
        else:
            with pytest.raises(ServiceUnavailable) as raised:
                check_input_frames([colour((40, 90, 200))], settings)
            assert raised.value.code == "moderation_unavailable"
