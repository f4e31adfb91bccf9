"""POST /generate: good requests are queued; each bad field is a 400 naming it, and nothing is queued."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from app.jobs.models import Job


def _queued(redis_client: Any, settings_env: dict[str, str]) -> int:
    return int(redis_client.llen(settings_env["KINEMA_QUEUE_NAME"]))


def _jobs(db_session: Any) -> int:
    return int(db_session.scalar(select(func.count()).select_from(Job)))


def test_submit_returns_202_location_and_a_queued_job(
    client: Any, make_key: Any, db_session: Any, redis_client: Any, settings_env: dict[str, str]
) -> None:
    _, key = make_key()
    before = _queued(redis_client, settings_env)
    response = client.post(
        "/generate",
        headers={"Authorization": f"Bearer {key}"},
        json={"prompt": "a red ball rolling across a wooden table", "duration": 4, "seed": 7},
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/jobs/{job['id']}"
    assert job["status"] == "queued" and job["phase"] == "queued" and job["progress"] == 0
    assert job["queue_position"] == 0
    params = job["parameters"]
    # The built-in model's defaults: 256x256 at 8 fps, so 4 s is 32 frames.
    assert (params["width"], params["height"], params["fps"], params["num_frames"]) == (256, 256, 8, 32)
    assert params["seed"] == 7
    assert _queued(redis_client, settings_env) == before + 1
    assert db_session.get(Job, job["id"]).status == "queued"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "", "duration": 4}, "prompt"),
        ({"prompt": "   ", "duration": 4}, "prompt"),
        ({"prompt": "x" * 2001, "duration": 4}, "prompt"),
        ({"duration": 4}, "prompt"),
        ({"prompt": 5, "duration": 4}, "prompt"),
        ({"prompt": "a cat", "duration": 0}, "duration"),
        ({"prompt": "a cat", "duration": -1}, "duration"),
        ({"prompt": "a cat", "duration": 61}, "duration"),
        ({"prompt": "a cat", "duration": "4"}, "duration"),
        ({"prompt": "a cat", "resolution": "999p"}, "resolution"),
        ({"prompt": "a cat", "resolution": "1000x1001"}, "resolution"),
        ({"prompt": "a cat", "resolution": "4096x4096"}, "resolution"),
        ({"prompt": "a cat", "resolution": "720p", "aspect_ratio": "2:1"}, "aspect_ratio"),
        ({"prompt": "a cat", "resolution": "640x480", "aspect_ratio": "16:9"}, "aspect_ratio"),
        ({"prompt": "a cat", "fps": 0}, "fps"),
        ({"prompt": "a cat", "fps": 1000}, "fps"),
        ({"prompt": "a cat", "seed": -1}, "seed"),
        ({"prompt": "a cat", "num_inference_steps": 0}, "num_inference_steps"),
        ({"prompt": "a cat", "num_inference_steps": 10_000}, "num_inference_steps"),
        ({"prompt": "a cat", "guidance_scale": "high"}, "guidance_scale"),
        ({"prompt": "a cat", "model": "someone/else"}, "model"),
        ({"prompt": "a cat", "colour": "red"}, "colour"),
    ],
)
def test_bad_field_is_400_naming_it_and_nothing_is_queued(
    client: Any,
    make_key: Any,
    db_session: Any,
    redis_client: Any,
    settings_env: dict[str, str],
    body: dict[str, Any],
    param: str,
) -> None:
    _, key = make_key()
    queued, jobs = _queued(redis_client, settings_env), _jobs(db_session)
    response = client.post("/generate", headers={"Authorization": f"Bearer {key}"}, json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    assert _queued(redis_client, settings_env) == queued
    assert _jobs(db_session) == jobs


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"{not json", "invalid_json"), (b"[1, 2]", "invalid_json"), (b'"a string"', "invalid_json")],
)
def test_body_that_is_not_a_json_object_is_400(client: Any, make_key: Any, content: bytes, code: str) -> None:
    _, key = make_key()
    response = client.post(
        "/generate",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        content=content,
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize(
    ("resolution", "aspect_ratio", "size"),
    [
        ("480p", None, (832, 480)),
        ("720p", "9:16", (720, 1280)),
        ("1080p", None, (1920, 1080)),
        ("1080p", "1:1", (1080, 1080)),
        ("320x192", None, (320, 192)),
    ],
)
def test_resolution_presets_and_sizes(
    client: Any, make_key: Any, resolution: str, aspect_ratio: str | None, size: tuple[int, int]
) -> None:
    _, key = make_key()
    body: dict[str, Any] = {"prompt": "a cat", "duration": 1, "resolution": resolution}
    if aspect_ratio:
        body["aspect_ratio"] = aspect_ratio
    response = client.post("/generate", headers={"Authorization": f"Bearer {key}"}, json=body)
    assert response.status_code == 202, response.text
    params = response.json()["parameters"]
    assert (params["width"], params["height"]) == size


def test_unknown_route_and_method_use_the_error_shape(client: Any) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"
    response = client.delete("/generate")
    assert response.status_code == 405
    assert "error" in response.json()
