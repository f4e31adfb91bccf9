"""POST /generate with an image or a video (upload or URL), /jobs/{id}/extend and /jobs/{id}/remix:
the job rows each mode writes, the inputs stored under `inputs/`, and every refusal naming its field.

Runs the real app in-process on Postgres, Redis and moto's S3; URL inputs come from a real HTTP server
on 127.0.0.1 (allowed with KINEMA_INPUT_ALLOW_PRIVATE_URLS). No worker runs: the rows and responses are
what is checked, and a parent job that must be finished is written as a succeeded row.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from app.db import utcnow
from app.jobs.models import Job
from tests.conftest import s3_client
from tests.inputs import samples
from tests.inputs.server import Served, serving


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _stored(env: dict[str, str], key_id: str) -> dict[str, bytes]:
    """Every object under `inputs/<key_id>/` in the deployment's bucket."""
    s3 = s3_client(env)
    listing = s3.list_objects_v2(Bucket=env["KINEMA_S3_BUCKET"], Prefix=f"inputs/{key_id}/")
    return {
        obj["Key"]: s3.get_object(Bucket=env["KINEMA_S3_BUCKET"], Key=obj["Key"])["Body"].read()
        for obj in listing.get("Contents", [])
    }


def _queued(redis_client: Any, env: dict[str, str]) -> int:
    return int(redis_client.llen(env["KINEMA_QUEUE_NAME"]))


@pytest.fixture
def allow_private_urls(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from app.config import get_settings

    monkeypatch.setenv("KINEMA_INPUT_ALLOW_PRIVATE_URLS", "true")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def server() -> Iterator[Served]:
    with serving() as served:
        yield served


def _finished(make_job: Any, key_row: Any, **values: Any) -> Job:
    """A succeeded job with a stored video: 160x96 at 8 fps, 16 frames (2 s)."""
    fields: dict[str, Any] = {
        "status": "succeeded",
        "width": 160,
        "height": 96,
        "fps": 8,
        "num_frames": 16,
        "duration_s": 2.0,
        "video_key": "videos/parent.mp4",
        "output_frames": 16,
        "output_duration_s": 2.0,
        "finished_at": utcnow(),
    }
    fields.update(values)
    return make_job(key_row, **fields)  # type: ignore[no-any-return]


def test_a_text_job_reports_its_kind_and_no_inputs(client: Any, make_key: Any) -> None:
    _, key = make_key()
    job = client.post("/generate", json={"prompt": "a cat", "duration": 1}, headers=_auth(key)).json()
    assert (job["kind"], job["parent_id"], job["input"], job["strength"]) == ("text", None, None, None)


def test_a_minute_long_video_is_accepted_whatever_one_pass_makes(client: Any, make_key: Any) -> None:
    _, key = make_key()
    response = client.post("/generate", json={"prompt": "a long take", "duration": 60}, headers=_auth(key))
    assert response.status_code == 202, response.text
    assert response.json()["parameters"]["num_frames"] == 480  # 60 s at 8 fps: several passes, chained


def test_an_uploaded_image_makes_an_image_job_and_is_stored_upright_as_png(
    client: Any, make_key: Any, db_session: Any, settings_env: dict[str, str], redis_client: Any
) -> None:
    row, key = make_key()
    before = _queued(redis_client, settings_env)
    response = client.post(
        "/generate",
        data={"prompt": "the cat starts to dance", "duration": "2", "resolution": "128x128", "seed": "5"},
        files={"image": ("photo.jpg", samples.jpeg_with_orientation((64, 32), 6), "image/jpeg")},
        headers=_auth(key),
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert (job["kind"], job["input"], job["parent_id"], job["strength"]) == (
        "image",
        {"type": "image"},
        None,
        None,
    )
    params = job["parameters"]
    assert (params["width"], params["height"], params["num_frames"], params["seed"]) == (128, 128, 16, 5)
    stored = db_session.get(Job, job["id"])
    assert stored.input_type == "image" and stored.input_key.startswith(f"inputs/{row.id}/")
    assert stored.input_key.endswith(".png")
    image = Image.open(io.BytesIO(_stored(settings_env, row.id)[stored.input_key]))
    assert image.format == "PNG" and image.size == (32, 64)  # the EXIF rotation applied
    assert _queued(redis_client, settings_env) == before + 1


def test_an_uploaded_video_makes_an_edit_at_the_sources_size_and_length(
    client: Any, make_key: Any, db_session: Any, settings_env: dict[str, str], tmp_path: Path
) -> None:
    row, key = make_key()
    clip = samples.video_bytes(tmp_path, "clip.mov", container="mov", size=(160, 96), fps=8, frames=20)
    response = client.post(
        "/generate",
        data={"prompt": "make it winter", "strength": "0.35"},
        files={"video": ("clip.bin", clip, "application/octet-stream")},
        headers=_auth(key),
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert (job["kind"], job["input"], job["strength"]) == ("edit", {"type": "video"}, 0.35)
    params = job["parameters"]
    assert (params["width"], params["height"], params["fps"], params["num_frames"]) == (160, 96, 8, 20)
    assert params["duration"] == 2.5
    stored = db_session.get(Job, job["id"])
    assert stored.input_key.endswith(".mov")
    assert _stored(settings_env, row.id)[stored.input_key] == clip  # the caller's bytes, as checked


def test_an_edit_defaults_its_strength(client: Any, make_key: Any, tmp_path: Path) -> None:
    _, key = make_key()
    response = client.post(
        "/generate",
        data={"prompt": "make it winter"},
        files={"video": ("a.mp4", samples.video_bytes(tmp_path), "video/mp4")},
        headers=_auth(key),
    )
    assert response.status_code == 202, response.text
    assert response.json()["strength"] == 0.6


def test_image_url_and_video_url_are_fetched(
    client: Any, make_key: Any, db_session: Any, allow_private_urls: None, server: Served, tmp_path: Path
) -> None:
    _, key = make_key()
    server.files["cat"] = samples.image_bytes("WEBP")
    server.files["clip"] = samples.video_bytes(tmp_path, "c.webm", container="webm", codec="libvpx-vp9")
    image = client.post(
        "/generate", json={"prompt": "a cat", "image_url": server.url("/files/cat")}, headers=_auth(key)
    )
    assert image.status_code == 202, image.text
    assert image.json()["kind"] == "image"
    assert db_session.get(Job, image.json()["id"]).input_key.endswith(".png")
    video = client.post(
        "/generate", json={"prompt": "a dog", "video_url": server.url("/files/clip")}, headers=_auth(key)
    )
    assert video.status_code == 202, video.text
    assert video.json()["kind"] == "edit"
    assert db_session.get(Job, video.json()["id"]).input_key.endswith(".webm")


@pytest.mark.parametrize(
    ("form", "files", "status", "param", "code"),
    [
        ({}, {"image": samples.SVG}, 415, "image", "unsupported_media_type"),
        ({}, {"image": samples.gif_bytes()}, 415, "image", "unsupported_media_type"),
        ({}, {"image": samples.FAKE_PNG}, 400, "image", "input_unreadable"),
        ({}, {"image": samples.png_claiming(30000, 30000)}, 413, "image", "input_too_large"),
        ({}, {"video": b"not a video, whatever its name\n"}, 415, "video", "unsupported_media_type"),
        ({}, {"video": samples.image_bytes()}, 415, "video", "unsupported_media_type"),
        ({}, {"image": samples.image_bytes(), "video": samples.image_bytes()}, 400, "video", "invalid_value"),
        (
            {"image_url": "https://example.com/a.png"},
            {"image": samples.image_bytes()},
            400,
            "image",
            "invalid_value",
        ),
        ({"strength": "0.5"}, {"image": samples.image_bytes()}, 400, "strength", "invalid_value"),
        ({"duration": "3"}, {"video": b"\x00"}, 400, "duration", "invalid_value"),
        ({}, {"thumbnail": samples.image_bytes()}, 400, "thumbnail", "invalid_value"),
        ({"image": "text, not a file"}, {}, 400, "image", "invalid_value"),
        ({"duration": "soon"}, {"image": samples.image_bytes()}, 400, "duration", "invalid_type"),
    ],
)
def test_refused_inputs_name_their_field_and_leave_nothing_behind(
    client: Any,
    make_key: Any,
    settings_env: dict[str, str],
    redis_client: Any,
    form: dict[str, str],
    files: dict[str, bytes],
    status: int,
    param: str,
    code: str,
) -> None:
    row, key = make_key()
    before = _queued(redis_client, settings_env)
    response = client.post(
        "/generate",
        data={"prompt": "a cat", **form},
        files={name: (f"{name}.png", data, "image/png") for name, data in files.items()} or None,
        headers=_auth(key),
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, code), error
    assert error["type"] == "invalid_request_error" and error["message"]
    assert _stored(settings_env, row.id) == {} and _queued(redis_client, settings_env) == before


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"image_url": "http://127.0.0.1:9/cat.png"}, "image_url", "url_not_allowed"),
        ({"image_url": "http://localhost:9/cat.png"}, "image_url", "url_not_allowed"),
        ({"video_url": "file:///etc/passwd"}, "video_url", "url_not_allowed"),
        ({"image_url": "ftp://example.com/cat.png"}, "image_url", "url_not_allowed"),
        (
            {"image_url": "https://a.example/x.png", "video_url": "https://a.example/x.mp4"},
            "video_url",
            "invalid_value",
        ),
        ({"video_url": "https://a.example/x.mp4", "fps": 12}, "fps", "invalid_value"),
    ],
)
def test_refused_urls_name_their_field(
    client: Any, make_key: Any, body: dict[str, Any], param: str, code: str
) -> None:
    _, key = make_key()
    response = client.post("/generate", json={"prompt": "a cat", **body}, headers=_auth(key))
    assert response.status_code == 400, response.text
    assert (response.json()["error"]["param"], response.json()["error"]["code"]) == (param, code)


def test_an_upload_over_the_byte_limit_is_413_before_it_is_read(
    client: Any, make_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.config import get_settings

    monkeypatch.setenv("KINEMA_INPUT_IMAGE_MAX_BYTES", "2048")
    monkeypatch.setenv("KINEMA_INPUT_VIDEO_MAX_BYTES", "2048")
    get_settings.cache_clear()
    _, key = make_key()
    response = client.post(
        "/generate",
        data={"prompt": "a cat"},
        files={"image": ("big.png", b"\x89PNG\r\n\x1a\n" + bytes(3 * 1024 * 1024), "image/png")},
        headers=_auth(key),
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "input_too_large"
    get_settings.cache_clear()


def test_moderation_still_screens_the_prompt_and_the_input_is_not_kept(
    client: Any, make_key: Any, settings_env: dict[str, str]
) -> None:
    row, key = make_key()
    response = client.post(
        "/generate",
        data={"prompt": "a gruesome scene full of gore"},
        files={"image": ("a.png", samples.image_bytes(), "image/png")},
        headers=_auth(key),
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "moderation_blocked"
    assert _stored(settings_env, row.id) == {}  # stored while checking, deleted when the submit was refused


def test_an_idempotency_key_replays_an_upload_and_stores_it_once(
    client: Any, make_key: Any, settings_env: dict[str, str]
) -> None:
    row, key = make_key()
    headers = {**_auth(key), "Idempotency-Key": "upload-1"}
    image = samples.image_bytes()

    def post(data: bytes) -> Any:
        return client.post(
            "/generate",
            data={"prompt": "a cat"},
            files={"image": ("a.png", data, "image/png")},
            headers=headers,
        )

    first, second = post(image), post(image)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"] and second.headers["idempotent-replayed"] == "true"
    assert len(_stored(settings_env, row.id)) == 1
    other = post(samples.image_bytes(color=(0, 0, 255)))  # another file under the same key
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"


def test_extend_makes_a_job_for_the_new_seconds_at_the_parents_size(
    client: Any, make_key: Any, make_job: Any, db_session: Any
) -> None:
    row, key = make_key()
    parent = _finished(make_job, row)
    response = client.post(
        f"/jobs/{parent.id}/extend",
        json={"prompt": "the ball rolls off the table", "duration": 3, "seed": 9},
        headers=_auth(key),
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/jobs/{job['id']}"
    assert (job["kind"], job["parent_id"], job["input"]) == ("extend", parent.id, None)
    params = job["parameters"]
    assert (params["width"], params["height"], params["fps"]) == (160, 96, 8)
    assert (params["duration"], params["num_frames"], params["seed"]) == (3.0, 24, 9)
    stored = db_session.get(Job, job["id"])
    assert (stored.kind, stored.parent_id, stored.input_key) == ("extend", parent.id, None)


def test_extending_an_extended_video_counts_its_whole_length(
    client: Any, make_key: Any, make_job: Any
) -> None:
    row, key = make_key()
    parent = _finished(
        make_job, row, kind="extend", duration_s=8.0, num_frames=64, output_frames=464, output_duration_s=58.0
    )
    over = client.post(
        f"/jobs/{parent.id}/extend", json={"prompt": "more", "duration": 3}, headers=_auth(key)
    )
    assert over.status_code == 400 and over.json()["error"]["param"] == "duration"
    assert "58 s" in over.json()["error"]["message"]
    fits = client.post(
        f"/jobs/{parent.id}/extend", json={"prompt": "more", "duration": 2}, headers=_auth(key)
    )
    assert fits.status_code == 202, fits.text


def test_remix_keeps_the_parents_size_and_length(client: Any, make_key: Any, make_job: Any) -> None:
    row, key = make_key()
    parent = _finished(make_job, row, kind="extend", output_frames=40, output_duration_s=5.0)
    response = client.post(f"/jobs/{parent.id}/remix", json={"prompt": "in watercolour"}, headers=_auth(key))
    assert response.status_code == 202, response.text
    job = response.json()
    assert (job["kind"], job["parent_id"], job["strength"], job["input"]) == ("remix", parent.id, 0.6, None)
    params = job["parameters"]
    assert (params["width"], params["height"], params["fps"], params["num_frames"], params["duration"]) == (
        160,
        96,
        8,
        40,
        5.0,
    )
    strong = client.post(
        f"/jobs/{parent.id}/remix", json={"prompt": "in oils", "strength": 0.9}, headers=_auth(key)
    )
    assert strong.json()["strength"] == 0.9
    for bad in (0, 1.5, "high"):
        refused = client.post(
            f"/jobs/{parent.id}/remix", json={"prompt": "x", "strength": bad}, headers=_auth(key)
        )
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "strength", bad


@pytest.mark.parametrize("action", ["extend", "remix"])
def test_another_keys_parent_is_404_and_an_unfinished_one_409(
    action: str, client: Any, make_key: Any, make_job: Any, redis_client: Any, settings_env: dict[str, str]
) -> None:
    row, key = make_key()
    other, _ = make_key("other")
    before = _queued(redis_client, settings_env)
    theirs = _finished(make_job, other)
    response = client.post(f"/jobs/{theirs.id}/{action}", json={"prompt": "x"}, headers=_auth(key))
    assert response.status_code == 404 and response.json()["error"]["param"] == "id"
    assert (
        client.post(f"/jobs/video_missing/{action}", json={"prompt": "x"}, headers=_auth(key)).status_code
        == 404
    )
    for status in ("queued", "in_progress", "failed", "canceled"):
        parent = make_job(row, status=status)
        response = client.post(f"/jobs/{parent.id}/{action}", json={"prompt": "x"}, headers=_auth(key))
        assert response.status_code == 409, status
        assert (
            response.json()["error"]["code"] == "parent_not_ready"
            and status in response.json()["error"]["message"]
        )
    assert _queued(redis_client, settings_env) == before


def test_extend_and_remix_are_moderated_and_idempotent(client: Any, make_key: Any, make_job: Any) -> None:
    row, key = make_key()
    parent = _finished(make_job, row)
    blocked = client.post(f"/jobs/{parent.id}/remix", json={"prompt": "gore everywhere"}, headers=_auth(key))
    assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "moderation_blocked"
    headers = {**_auth(key), "Idempotency-Key": "ext-1"}
    first = client.post(f"/jobs/{parent.id}/extend", json={"prompt": "on", "duration": 1}, headers=headers)
    again = client.post(f"/jobs/{parent.id}/extend", json={"prompt": "on", "duration": 1}, headers=headers)
    assert first.json()["id"] == again.json()["id"] and again.headers["idempotent-replayed"] == "true"
    changed = client.post(f"/jobs/{parent.id}/extend", json={"prompt": "on", "duration": 2}, headers=headers)
    assert changed.status_code == 409


def test_an_uploaded_videos_shape_is_capped_at_the_deployments_limits(settings_env: dict[str, str]) -> None:
    from app.config import get_settings
    from app.inputs.media import MP4
    from app.inputs.service import ReceivedInput
    from app.inputs.videos import VideoInfo
    from app.jobs.modes import video_shape
    from app.jobs.parameters import model_spec

    settings = get_settings()
    spec = model_spec(None, settings)

    def shape_of(video: VideoInfo) -> tuple[int, int, int, int, float]:
        received = ReceivedInput(
            param="video", format=MP4, path=Path("x"), width=video.width, height=video.height, video=video
        )
        shape = video_shape(received, spec, settings)
        return (shape.width, shape.height, shape.fps, shape.num_frames, shape.duration_s)

    # 4K at 29.97 fps: scaled to 1920x1080 (KINEMA_MAX_PIXELS), at 30 fps.
    assert shape_of(VideoInfo(3840, 2160, 29.97, 120, 4.004, "hevc")) == (1920, 1080, 30, 120, 4.0)
    # A portrait phone video keeps its orientation; sides stay multiples of 8.
    assert shape_of(VideoInfo(1080, 1920, 30.0, 60, 2.0, "h264"))[:2] == (1080, 1920)
    assert shape_of(VideoInfo(1000, 1000, 8.0, 16, 2.0, "h264"))[:2] == (1000, 1000)
    assert shape_of(VideoInfo(2000, 1000, 8.0, 16, 2.0, "h264"))[:2] == (1920, 960)
    # 70 s: cut to the 60 s a video may last.
    assert shape_of(VideoInfo(160, 96, 8.0, 560, 70.0, "h264")) == (160, 96, 8, 480, 60.0)
