"""The real `openai` SDK, unchanged, against a live Kinema (API + Celery worker + tiny model + moto S3)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI
from PIL import Image

from tests.conftest import s3_client
from tests.e2e.harness import Service, create_key, probe_mp4

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")]

# Tiny jobs: 128x128, 8 frames at the built-in model's 8 fps, 10 steps: about a second each.
SIZE, SECONDS = "128x128", "1"


@pytest.fixture(scope="module")
def sdk(live: Service) -> Iterator[OpenAI]:
    """An SDK client on a key of its own (so listing sees only this module's videos)."""
    with OpenAI(base_url=f"{live.base_url}/v1", api_key=create_key(live.env, "sdk"), max_retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def finished(sdk: OpenAI, live: Service) -> Any:
    """One video made with create_and_poll, which waits as the `openai-poll-after-ms` header says."""
    video = sdk.videos.create_and_poll(
        prompt="a red ball rolling", model="sora-2", size=SIZE, seconds=SECONDS
    )  # type: ignore[arg-type]
    assert video.status == "completed", (video, live.logs())
    return video


def _s3_keys(live: Service) -> set[str]:
    s3 = s3_client(live.env)
    listing = s3.list_objects_v2(Bucket=live.env["KINEMA_S3_BUCKET"], Prefix="videos/")
    return {o["Key"] for o in listing.get("Contents", [])}


def test_create_and_poll_completes(finished: Any, sdk: OpenAI) -> None:
    assert finished.id.startswith("video_") and finished.object == "video"
    assert (finished.progress, finished.size, finished.seconds) == (100, SIZE, SECONDS)
    assert finished.model == "builtin:tiny-wan" and finished.error is None
    assert finished.completed_at >= finished.created_at and finished.expires_at is None
    again = sdk.videos.retrieve(finished.id)
    assert again.model_dump() == finished.model_dump()


def test_download_content_video_thumbnail_spritesheet(finished: Any, sdk: OpenAI, artifacts: Path) -> None:
    path = artifacts / "video.mp4"
    sdk.videos.download_content(finished.id).write_to_file(path)
    probe = probe_mp4(path)
    assert (probe.width, probe.height, probe.frames, probe.codec) == (128, 128, 8, "h264")
    assert probe.fps == pytest.approx(8) and probe.duration == pytest.approx(1.0, abs=0.01)

    thumbnail = Image.open(io.BytesIO(sdk.videos.download_content(finished.id, variant="thumbnail").content))
    assert thumbnail.format == "JPEG" and thumbnail.size == (128, 128)
    # 8 frames -> 8 tiles of 128x128, 4 to a row.
    sheet = Image.open(io.BytesIO(sdk.videos.download_content(finished.id, variant="spritesheet").content))
    assert sheet.format == "JPEG" and sheet.size == (512, 256)


def test_list_pages_through_every_video(finished: Any, sdk: OpenAI) -> None:
    more = [sdk.videos.create(prompt=f"clip {i}", size=SIZE, seconds=SECONDS) for i in range(2)]  # type: ignore[arg-type]
    first = sdk.videos.list(limit=2)
    assert len(first.data) == 2 and first.has_more
    newest_first = [video.id for video in sdk.videos.list(limit=2)]  # the SDK follows `last_id` pages
    assert newest_first == [more[1].id, more[0].id, finished.id]
    assert [video.id for video in sdk.videos.list(limit=1, order="asc")] == newest_first[::-1]
    for video in more:  # deleting an unfinished video cancels it first
        assert sdk.videos.delete(video.id).deleted


def test_delete_then_retrieve_is_not_found(finished: Any, sdk: OpenAI, live: Service) -> None:
    assert any(finished.id in key for key in _s3_keys(live))
    deleted = sdk.videos.delete(finished.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (finished.id, "video.deleted", True)
    with pytest.raises(openai.NotFoundError):
        sdk.videos.retrieve(finished.id)
    with pytest.raises(openai.NotFoundError):
        sdk.videos.download_content(finished.id)
    assert not any(finished.id in key for key in _s3_keys(live))  # MP4, thumbnail and spritesheet


def test_wrong_key_is_an_authentication_error(live: Service) -> None:
    client = OpenAI(base_url=f"{live.base_url}/v1", api_key="kn_wrong", max_retries=0)
    with client, pytest.raises(openai.AuthenticationError) as raised:
        client.videos.list()
    assert raised.value.code == "invalid_api_key"


def test_bad_size_and_seconds_are_bad_request_errors(sdk: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.videos.create(prompt="x", size="9999x9999")  # type: ignore[arg-type]
    assert raised.value.param == "size"
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.videos.create(prompt="x", seconds="61")  # type: ignore[arg-type]
    assert raised.value.param == "seconds"
    with pytest.raises(openai.BadRequestError) as raised:  # a PNG signature, then no PNG
        sdk.videos.create(prompt="x", input_reference=("cat.png", b"\x89PNG\r\n\x1a\nnot a png", "image/png"))
    assert (raised.value.param, raised.value.code) == ("input_reference", "input_unreadable")


def test_models_list_the_served_model(sdk: OpenAI) -> None:
    models = [model.id for model in sdk.models.list()]
    assert models == ["builtin:tiny-wan"]
    assert sdk.models.retrieve("builtin:tiny-wan").owned_by == "kinema"
