"""The real `openai` SDK's videos.create (input_reference), remix, edit and extend against Kinema: the
requests it encodes (`input_reference` files, `input_reference[image_url]`, `video[id]`) make the right jobs.

In-process app on Postgres, Redis and moto's S3 (the SDK's http_client is the TestClient); no worker runs,
so the checks are the job rows and the video objects, and finished parents are written as rows.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI

from app.db import utcnow
from app.jobs.models import Job
from tests.inputs import samples
from tests.inputs.server import serving

# The SDK marks OpenAI's own video API deprecated.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def by_id(video_id: str) -> dict[str, Any]:
    """`video={"id": ...}` for edit/extend as openai 3.57 can send it: its file extraction raises on the
    dict before sending, so the same form field (`video[id]`) goes through `extra_body` instead."""
    return {"video": openai.omit, "extra_body": {"video": {"id": video_id}}}


def image_url(url: str) -> dict[str, Any]:
    """`input_reference={"image_url": ...}` the same way (encoded as `input_reference[image_url]`)."""
    return {"extra_body": {"input_reference": {"image_url": url}}}


@pytest.fixture
def sdk_key(make_key: Any) -> tuple[Any, str]:
    return make_key("sdk")  # type: ignore[no-any-return]


@pytest.fixture
def sdk(client: Any, sdk_key: tuple[Any, str]) -> Iterator[OpenAI]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield OpenAI(base_url=f"{client.base_url}/v1", api_key=sdk_key[1], http_client=client, max_retries=0)


@pytest.fixture
def finished(make_job: Any, sdk_key: tuple[Any, str]) -> Job:
    """A completed video of the SDK's key: 160x96, 8 fps, 2 s."""
    return make_job(  # type: ignore[no-any-return]
        sdk_key[0],
        status="succeeded",
        width=160,
        height=96,
        fps=8,
        num_frames=16,
        duration_s=2.0,
        video_key="videos/parent.mp4",
        output_frames=16,
        output_duration_s=2.0,
        finished_at=utcnow(),
    )


def test_create_with_an_uploaded_image_is_image_to_video(sdk: OpenAI, db_session: Any) -> None:
    video = sdk.videos.create(
        prompt="the cat wakes up",
        input_reference=("cat.png", samples.image_bytes("PNG", size=(80, 60)), "image/png"),
        size="128x128",  # type: ignore[arg-type]
        seconds="2",  # type: ignore[arg-type]
    )
    assert (video.status, video.size, video.seconds) == ("queued", "128x128", "2")
    row = db_session.get(Job, video.id)
    assert (row.kind, row.input_type, row.parent_id) == ("image", "image", None)
    assert row.input_key.startswith(f"inputs/{row.api_key_id}/") and row.input_key.endswith(".png")


def test_create_with_an_uploaded_video_is_an_edit_of_it(sdk: OpenAI, db_session: Any, tmp_path: Path) -> None:
    clip = samples.video_bytes(tmp_path, size=(160, 96), fps=8, frames=24)
    video = sdk.videos.create(prompt="make it snow", input_reference=("clip.mp4", clip, "video/mp4"))
    assert (video.size, video.seconds) == ("160x96", "3")  # the source's size and length
    row = db_session.get(Job, video.id)
    assert (row.kind, row.input_type, row.strength, row.num_frames) == ("edit", "video", 0.6, 24)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.videos.create(prompt="x", input_reference=("clip.mp4", clip, "video/mp4"), seconds="8")  # type: ignore[arg-type]
    assert caught.value.body["param"] == "seconds"  # type: ignore[index]


def test_create_with_an_image_url_reference(
    sdk: OpenAI, db_session: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import get_settings

    with serving({"cat.webp": samples.image_bytes("WEBP")}) as server:
        # A public deployment refuses the test server's loopback address...
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.videos.create(prompt="a cat", **image_url(server.url("/files/cat.webp")))
        assert caught.value.code == "url_not_allowed"
        assert caught.value.body["param"] == "input_reference"  # type: ignore[index]
        assert server.requests == []
        # ...a development one fetches it.
        monkeypatch.setenv("KINEMA_INPUT_ALLOW_PRIVATE_URLS", "true")
        get_settings.cache_clear()
        video = sdk.videos.create(prompt="a cat", **image_url(server.url("/files/cat.webp")))
        get_settings.cache_clear()
    row = db_session.get(Job, video.id)
    assert (row.kind, row.input_type) == ("image", "image") and row.input_key.endswith(".png")


def test_input_reference_refusals(sdk: OpenAI, tmp_path: Path) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.videos.create(prompt="x", input_reference=("cat.png", samples.SVG, "image/png"))
    assert caught.value.status_code == 415 and caught.value.code == "unsupported_media_type"
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.videos.create(prompt="x", extra_body={"input_reference": {"file_id": "file_123"}})
    assert bad.value.code == "unsupported" and bad.value.body["param"] == "input_reference"  # type: ignore[index]
    text = tmp_path / "movie.mp4"
    text.write_text("not a movie")
    with pytest.raises(openai.APIStatusError) as named:
        sdk.videos.create(prompt="x", input_reference=text)
    assert named.value.status_code == 415


def test_remix_makes_a_remix_job_of_the_parent(sdk: OpenAI, finished: Job, db_session: Any) -> None:
    video = sdk.videos.remix(finished.id, prompt="the same, at night")
    assert video.remixed_from_video_id == finished.id
    assert (video.size, video.seconds, video.prompt) == ("160x96", "2", "the same, at night")
    row = db_session.get(Job, video.id)
    assert (row.kind, row.parent_id, row.strength, row.num_frames) == ("remix", finished.id, 0.6, 16)
    again = sdk.videos.remix(finished.id, prompt="stronger", extra_body={"strength": 0.9})
    assert db_session.get(Job, again.id).strength == 0.9


def test_edit_by_id_and_by_upload(sdk: OpenAI, finished: Job, db_session: Any, tmp_path: Path) -> None:
    edited = sdk.videos.edit(prompt="add rain", **by_id(finished.id))
    row = db_session.get(Job, edited.id)
    assert (row.kind, row.parent_id, row.input_key, row.width, row.num_frames) == (
        "edit",
        finished.id,
        None,
        160,
        16,
    )
    assert edited.remixed_from_video_id is None
    clip = samples.video_bytes(
        tmp_path, "c.webm", container="webm", codec="libvpx-vp9", size=(128, 64), frames=8
    )
    uploaded = sdk.videos.edit(prompt="add rain", video=("c.webm", clip, "video/webm"))
    row = db_session.get(Job, uploaded.id)
    assert (row.kind, row.parent_id, row.input_type, row.width, row.height) == (
        "edit",
        None,
        "video",
        128,
        64,
    )
    assert row.input_key.endswith(".webm")


def test_extend_adds_seconds_to_a_completed_video(sdk: OpenAI, finished: Job, db_session: Any) -> None:
    video = sdk.videos.extend(prompt="it keeps rolling", seconds="4", **by_id(finished.id))  # type: ignore[arg-type]
    assert video.seconds == "4" and video.size == "160x96"  # `seconds`: the new part
    row = db_session.get(Job, video.id)
    assert (row.kind, row.parent_id, row.duration_s, row.num_frames) == ("extend", finished.id, 4.0, 32)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.videos.extend(prompt="on", seconds="59", **by_id(finished.id))  # type: ignore[arg-type]
    assert caught.value.body["param"] == "seconds" and "60 s" in caught.value.message  # type: ignore[index]


def test_parents_of_another_key_or_unfinished(
    sdk: OpenAI, make_key: Any, make_job: Any, sdk_key: tuple[Any, str]
) -> None:
    other, _ = make_key("other")
    theirs = make_job(other, status="succeeded", video_key="videos/theirs.mp4")
    with pytest.raises(openai.NotFoundError):
        sdk.videos.remix(theirs.id, prompt="x")
    with pytest.raises(openai.NotFoundError):
        sdk.videos.extend(prompt="x", seconds="4", **by_id(theirs.id))  # type: ignore[arg-type]
    running = make_job(sdk_key[0], status="in_progress")
    for call in (
        lambda: sdk.videos.remix(running.id, prompt="x"),
        lambda: sdk.videos.edit(prompt="x", **by_id(running.id)),
        lambda: sdk.videos.extend(prompt="x", seconds="4", **by_id(running.id)),  # type: ignore[arg-type]
    ):
        with pytest.raises(openai.ConflictError) as caught:
            call()
        assert caught.value.code == "parent_not_ready"
        assert caught.value.response.headers["x-should-retry"] == "false"


def test_an_extension_of_an_upload_is_refused(sdk: OpenAI, tmp_path: Path) -> None:
    clip = samples.video_bytes(tmp_path)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.videos.extend(prompt="x", seconds="4", video=("c.mp4", clip, "video/mp4"))  # type: ignore[arg-type]
    assert caught.value.code == "unsupported" and caught.value.body["param"] == "video"  # type: ignore[index]


def test_remix_and_extensions_are_moderated(sdk: OpenAI, finished: Job) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.videos.remix(finished.id, prompt="now with gore")
    assert caught.value.code == "moderation_blocked"
    with pytest.raises(openai.BadRequestError):
        sdk.videos.extend(prompt="gruesome beheading", seconds="4", **by_id(finished.id))  # type: ignore[arg-type]


def test_json_bodies_work_too(client: Any, sdk_key: tuple[Any, str], finished: Job) -> None:
    headers = {"Authorization": f"Bearer {sdk_key[1]}"}
    response = client.post(
        "/v1/videos/extensions",
        json={"prompt": "more", "seconds": 2, "video": {"id": finished.id}},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["seconds"] == "2"
    response = client.post("/v1/videos/edits", json={"prompt": "more"}, headers=headers)
    assert response.status_code == 400 and response.json()["error"]["param"] == "video"


def test_deleting_a_video_deletes_its_input(sdk: OpenAI, db_session: Any) -> None:
    from app.storage import get_storage

    video = sdk.videos.create(
        prompt="a cat", input_reference=("cat.jpg", samples.image_bytes("JPEG"), "image/jpeg")
    )
    input_key = db_session.get(Job, video.id).input_key
    assert get_storage().exists(input_key)
    assert sdk.videos.delete(video.id).deleted
    assert not get_storage().exists(input_key)
