"""Image to video, remix, edit, extension and a 60 s video through the real `openai` SDK, made by a live
worker (API + Celery worker + tiny model + moto S3), each MP4 downloaded and read back."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import openai
import pytest
from openai import OpenAI
from PIL import Image

from tests.e2e.harness import Service, create_key, probe_mp4
from tests.openai_compat.test_modes_sdk import by_id

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")]

SIZE, SECONDS = "128x128", "1"  # 8 frames at the built-in model's 8 fps
LABEL_ROWS = 16  # the visible label's band at the bottom of a 128 px frame, with its margin


@pytest.fixture(scope="module")
def sdk(live: Service) -> Iterator[OpenAI]:
    with OpenAI(
        base_url=f"{live.base_url}/v1", api_key=create_key(live.env, "modes"), max_retries=0
    ) as client:
        yield client


@pytest.fixture(scope="module")
def parent(sdk: OpenAI, live: Service) -> Any:
    video = sdk.videos.create_and_poll(prompt="a red ball rolling", size=SIZE, seconds=SECONDS)  # type: ignore[arg-type]
    assert video.status == "completed", (video, live.logs())
    return video


def _finished(sdk: OpenAI, live: Service, video: Any) -> Any:
    done = sdk.videos.poll(video.id)
    assert done.status == "completed", (done, live.logs())
    return done


def _frames(sdk: OpenAI, video_id: str, path: Path) -> np.ndarray:
    sdk.videos.download_content(video_id).write_to_file(path)
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def _gradient(width: int, height: int) -> np.ndarray:
    """A smooth picture: H.264 keeps it well, so what is lost is what the pipeline changed."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], -1).astype(
        np.uint8
    )


def test_image_to_video_starts_with_the_image(sdk: OpenAI, live: Service, tmp_path: Path) -> None:
    image = _gradient(128, 128)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    video = sdk.videos.create(
        prompt="the colours start to swirl",
        input_reference=("still.png", buffer.getvalue(), "image/png"),
        size=SIZE,  # type: ignore[arg-type]
        seconds=SECONDS,  # type: ignore[arg-type]
    )
    _finished(sdk, live, video)
    frames = _frames(sdk, video.id, tmp_path / "i2v.mp4")
    assert frames.shape == (8, 128, 128, 3)
    # The first frame is the image, with the invisible watermark on it, after H.264; the bottom rows hold
    # the visible "AI-generated" label (bottom-right, 8 px tall at this size), so they are left out.
    unlabelled = slice(0, 128 - LABEL_ROWS)
    assert _psnr(image[unlabelled], frames[0][unlabelled]) > 30
    assert (
        _psnr(image[unlabelled], frames[-1][unlabelled]) < 20
    )  # then generated frames (noise: random weights)


def test_remix_keeps_the_parents_size_and_length(
    sdk: OpenAI, live: Service, parent: Any, tmp_path: Path
) -> None:
    remix = _finished(sdk, live, sdk.videos.remix(parent.id, prompt="a blue ball rolling"))
    assert remix.remixed_from_video_id == parent.id and (remix.size, remix.seconds) == (SIZE, SECONDS)
    original = _frames(sdk, parent.id, tmp_path / "parent.mp4")
    remixed = _frames(sdk, remix.id, tmp_path / "remix.mp4")
    assert remixed.shape == original.shape
    assert not np.array_equal(remixed, original)


def test_edit_of_a_video_by_id_keeps_its_size_and_length(
    sdk: OpenAI, live: Service, parent: Any, tmp_path: Path
) -> None:
    edited = _finished(sdk, live, sdk.videos.edit(prompt="add rain", **by_id(parent.id)))
    assert _frames(sdk, edited.id, tmp_path / "edit.mp4").shape == (8, 128, 128, 3)


def test_extension_is_the_source_then_the_added_seconds(
    sdk: OpenAI, live: Service, parent: Any, tmp_path: Path
) -> None:
    extension = sdk.videos.extend(prompt="it keeps rolling", seconds="2", **by_id(parent.id))  # type: ignore[arg-type]
    _finished(sdk, live, extension)
    path = tmp_path / "extended.mp4"
    whole = _frames(sdk, extension.id, path)
    source = _frames(sdk, parent.id, tmp_path / "source.mp4")
    probe = probe_mp4(path)
    assert (probe.frames, probe.duration) == (8 + 16, pytest.approx(3.0, abs=0.01))
    # The first part is the source video, re-encoded once more (and re-watermarked for the new job).
    assert min(_psnr(a, b) for a, b in zip(source, whole[:8], strict=True)) > 30


def test_a_sixty_second_video(sdk: OpenAI, live: Service, tmp_path: Path) -> None:
    """Longer than the model makes in one pass (161 frames = 20 s at 8 fps): chained segments."""
    video = sdk.videos.create(prompt="a long drive", size="64x64", seconds="60")  # type: ignore[arg-type]
    done = sdk.videos.poll(video.id, poll_interval_ms=1000)
    assert done.status == "completed", (done, live.logs())
    path = tmp_path / "long.mp4"
    sdk.videos.download_content(video.id).write_to_file(path)
    probe = probe_mp4(path)
    assert (probe.width, probe.height, probe.frames) == (64, 64, 480)
    assert probe.duration == pytest.approx(60.0, abs=0.01)


def test_an_extension_past_sixty_seconds_is_refused(sdk: OpenAI, parent: Any) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.videos.extend(prompt="on and on", seconds="60", **by_id(parent.id))  # type: ignore[arg-type]
    assert caught.value.body["param"] == "seconds"  # type: ignore[index]
