"""/v1/videos in-process: the OpenAI request and response shapes over the same jobs as /generate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.storage import get_storage


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _form(**fields: str) -> dict[str, tuple[None, str]]:
    """Multipart text fields, the way the openai SDK sends `videos.create`."""
    return {name: (None, value) for name, value in fields.items()}


def test_create_from_a_multipart_form_answers_the_video_object(
    client: Any, make_key: Any, db_session: Any
) -> None:
    _, key = make_key()
    response = client.post(
        "/v1/videos",
        files=_form(prompt="a red ball", model="sora-2", seconds="2", size="160x96"),
        headers=_auth(key),
    )
    assert response.status_code == 200, response.text
    video = response.json()
    assert video["id"].startswith("video_") and video["object"] == "video"
    assert video["status"] == "queued" and video["progress"] == 0
    assert (video["size"], video["seconds"], video["prompt"]) == ("160x96", "2", "a red ball")
    assert video["model"] == "builtin:tiny-wan"  # sora-* names mean the served model
    assert video["completed_at"] is None and video["expires_at"] is None and video["error"] is None
    assert video["remixed_from_video_id"] is None and isinstance(video["created_at"], int)
    assert int(response.headers["openai-poll-after-ms"]) > 0
    # The same job is visible on the /jobs view.
    job = client.get(f"/jobs/{video['id']}", headers=_auth(key)).json()
    assert (job["parameters"]["width"], job["parameters"]["height"], job["parameters"]["duration"]) == (
        160,
        96,
        2.0,
    )


def test_create_from_json_defaults_to_four_seconds_at_the_models_size(client: Any, make_key: Any) -> None:
    _, key = make_key()
    response = client.post("/v1/videos", json={"prompt": "waves"}, headers=_auth(key))
    assert response.status_code == 200, response.text
    assert (response.json()["seconds"], response.json()["size"]) == ("4", "256x256")


def test_bad_size_and_seconds_are_400s_naming_the_field(client: Any, make_key: Any) -> None:
    _, key = make_key()
    cases = [
        ({"size": "big"}, "size"),
        ({"size": "4000x4000"}, "size"),
        ({"size": "130x130"}, "size"),  # not a multiple of 8
        ({"seconds": "0"}, "seconds"),
        ({"seconds": "61"}, "seconds"),
        ({"seconds": "4.5"}, "seconds"),
        ({"model": "other-model"}, "model"),
        ({"prompt": "  "}, "prompt"),
    ]
    for fields, param in cases:
        body = {"prompt": "a cat", **fields}
        response = client.post("/v1/videos", files=_form(**body), headers=_auth(key))
        assert response.status_code == 400, (fields, response.text)
        error = response.json()["error"]
        assert error["param"] == param and error["type"] == "invalid_request_error", (fields, error)
    missing = client.post("/v1/videos", files=_form(seconds="4"), headers=_auth(key))
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "prompt"
    unknown = client.post("/v1/videos", json={"prompt": "a", "fps": 3}, headers=_auth(key))
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "fps"


def test_a_whole_minute_is_accepted_beyond_the_models_single_pass(client: Any, make_key: Any) -> None:
    # The built-in model makes 20 s at 8 fps in one pass; the worker chains passes up to 60 s.
    _, key = make_key()
    response = client.post("/v1/videos", files=_form(prompt="a long take", seconds="60"), headers=_auth(key))
    assert response.status_code == 200, response.text
    job = client.get(f"/jobs/{response.json()['id']}", headers=_auth(key)).json()
    assert (job["parameters"]["duration"], job["parameters"]["num_frames"]) == (60.0, 480)


def test_retrieve_maps_statuses_and_times(client: Any, make_key: Any, make_job: Any) -> None:
    from app.db import utcnow

    row, key = make_key()
    done = make_job(row, status="succeeded", progress=100, finished_at=utcnow(), video_key="videos/x.mp4")
    failed = make_job(
        row, status="failed", error_code="generation_failed", error_message="boom", finished_at=utcnow()
    )
    canceled = make_job(row, status="canceled", finished_at=utcnow())
    running = make_job(row, status="in_progress", progress=40)

    response = client.get(f"/v1/videos/{done.id}", headers=_auth(key))
    video = response.json()
    assert video["status"] == "completed" and video["progress"] == 100
    assert video["completed_at"] >= video["created_at"] > 1_700_000_000
    assert "openai-poll-after-ms" not in response.headers  # finished: nothing to poll for

    assert client.get(f"/v1/videos/{failed.id}", headers=_auth(key)).json()["error"] == {
        "code": "generation_failed",
        "message": "boom",
    }
    video = client.get(f"/v1/videos/{canceled.id}", headers=_auth(key)).json()
    assert video["status"] == "failed" and video["error"]["code"] == "canceled"
    response = client.get(f"/v1/videos/{running.id}", headers=_auth(key))
    assert response.json()["status"] == "in_progress" and response.json()["progress"] == 40
    assert response.json()["completed_at"] is None
    assert 250 <= int(response.headers["openai-poll-after-ms"]) <= 5000


def test_list_pages_in_either_order(client: Any, make_key: Any, make_job: Any) -> None:
    row, key = make_key()
    jobs = [make_job(row) for _ in range(5)]
    for order, expected in (("desc", [j.id for j in reversed(jobs)]), ("asc", [j.id for j in jobs])):
        seen: list[str] = []
        params: dict[str, Any] = {"limit": 2, "order": order}
        while True:
            page = client.get("/v1/videos", params=params, headers=_auth(key)).json()
            assert page["object"] == "list"
            assert page["first_id"] == page["data"][0]["id"] and page["last_id"] == page["data"][-1]["id"]
            seen += [v["id"] for v in page["data"]]
            if not page["has_more"]:
                break
            params["after"] = page["last_id"]
        assert seen == expected, order
    bad = client.get("/v1/videos", params={"order": "sideways"}, headers=_auth(key))
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "order"


def test_another_keys_video_and_a_wrong_key(client: Any, make_key: Any, make_job: Any) -> None:
    row, _ = make_key("owner")
    _, other = make_key("other")
    job = make_job(row)
    missing = client.get(f"/v1/videos/{job.id}", headers=_auth(other))
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    wrong = client.get("/v1/videos", headers=_auth("kn_0123456789_" + "x" * 32))
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"


def test_content_is_409_until_completed_and_the_sdk_is_told_not_to_retry(
    client: Any, make_key: Any, make_job: Any
) -> None:
    row, key = make_key()
    job = make_job(row)
    for variant in ("video", "thumbnail", "spritesheet"):
        response = client.get(f"/v1/videos/{job.id}/content", params={"variant": variant}, headers=_auth(key))
        assert response.status_code == 409, variant
        assert response.headers["x-should-retry"] == "false"
    bad = client.get(f"/v1/videos/{job.id}/content", params={"variant": "gif"}, headers=_auth(key))
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "variant"


def test_content_redirects_to_each_stored_file(
    client: Any, make_key: Any, make_job: Any, tmp_path: Path
) -> None:
    row, key = make_key()
    video_key = f"videos/{row.id}/v.mp4"
    job = make_job(row, status="succeeded", video_key=video_key, thumbnail_key=f"videos/{row.id}/v.jpg")
    sprites = tmp_path / "s.jpg"
    sprites.write_bytes(b"jpeg")
    response = client.get(
        f"/v1/videos/{job.id}/content",
        params={"variant": "spritesheet"},
        headers=_auth(key),
        follow_redirects=False,
    )
    assert response.status_code == 404  # not stored: a job from before spritesheets existed
    get_storage().put_file(job.spritesheet_key, sprites, "image/jpeg")
    for variant, stored in (
        ("video", video_key),
        ("thumbnail", job.thumbnail_key),
        ("spritesheet", job.spritesheet_key),
    ):
        response = client.get(
            f"/v1/videos/{job.id}/content",
            params={"variant": variant},
            headers=_auth(key),
            follow_redirects=False,
        )
        assert response.status_code == 302, variant
        assert f"/{stored}?" in response.headers["location"], variant
    get_storage().delete(job.spritesheet_key)


def test_cancel_then_delete(client: Any, make_key: Any, make_job: Any, db_session: Any) -> None:
    from app.jobs.models import Job

    row, key = make_key()
    queued, done = make_job(row), make_job(row, status="succeeded")
    canceled = client.post(f"/v1/videos/{queued.id}/cancel", headers=_auth(key))
    assert canceled.status_code == 200
    assert canceled.json()["status"] == "failed" and canceled.json()["error"]["code"] == "canceled"
    again = client.post(f"/v1/videos/{done.id}/cancel", headers=_auth(key))
    assert again.status_code == 409 and again.headers["x-should-retry"] == "false"

    deleted = client.delete(f"/v1/videos/{queued.id}", headers=_auth(key))
    assert deleted.status_code == 200
    assert deleted.json() == {"id": queued.id, "object": "video.deleted", "deleted": True}
    assert client.get(f"/v1/videos/{queued.id}", headers=_auth(key)).status_code == 404
    assert client.delete(f"/v1/videos/{queued.id}", headers=_auth(key)).status_code == 404
    db_session.expire_all()
    assert db_session.get(Job, queued.id) is None


def test_delete_of_a_queued_video_cancels_it_and_removes_stored_files(
    client: Any, make_key: Any, make_job: Any, tmp_path: Path
) -> None:
    row, key = make_key()
    queued = make_job(row)  # deleting it cancels it first
    assert client.delete(f"/v1/videos/{queued.id}", headers=_auth(key)).status_code == 200
    source = tmp_path / "f"
    source.write_bytes(b"x")
    storage = get_storage()
    keys = [f"videos/{row.id}/d.mp4", f"videos/{row.id}/d.jpg", f"videos/{row.id}/d.sprites.jpg"]
    for object_key in keys:
        storage.put_file(object_key, source, "application/octet-stream")
    done = make_job(row, status="succeeded", video_key=keys[0], thumbnail_key=keys[1])
    assert client.delete(f"/v1/videos/{done.id}", headers=_auth(key)).status_code == 200
    assert [storage.exists(k) for k in keys] == [False, False, False]


def test_idempotency_key_replays_the_first_video(client: Any, make_key: Any) -> None:
    _, key = make_key()
    headers = {**_auth(key), "Idempotency-Key": "create-1"}
    first = client.post("/v1/videos", files=_form(prompt="a cat", size="128x128"), headers=headers)
    second = client.post("/v1/videos", files=_form(prompt="a cat", size="128x128"), headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    changed = client.post("/v1/videos", files=_form(prompt="a dog", size="128x128"), headers=headers)
    assert changed.status_code == 409


def test_models_lists_the_served_model_with_its_capabilities(client: Any, make_key: Any) -> None:
    _, key = make_key()
    body = client.get("/v1/models", headers=_auth(key)).json()
    assert body["object"] == "list" and [m["id"] for m in body["data"]] == ["builtin:tiny-wan"]
    model = body["data"][0]
    assert model["object"] == "model" and model["owned_by"] == "kinema"
    assert model["capabilities"]["max_seconds"] == 60
    assert model["capabilities"]["modes"] == ["text", "image", "extend", "edit", "remix"]
    one = client.get("/v1/models/builtin:tiny-wan", headers=_auth(key))
    assert one.status_code == 200 and one.json() == model
    assert client.get("/v1/models/sora-2", headers=_auth(key)).status_code == 404


def test_sdk_extras_reach_the_job_webhook_url_and_idempotency_key(
    client: Any, make_key: Any, db_session: Any
) -> None:
    import warnings

    from openai import OpenAI

    _, key = make_key()
    # The real SDK over the in-process app (TestClient is an httpx.Client).
    sdk = OpenAI(base_url=f"{client.base_url}/v1", api_key=key, http_client=client, max_retries=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the SDK marks OpenAI's own video API deprecated
        made = [
            sdk.videos.create(
                prompt="a cat",
                size="128x128",  # type: ignore[arg-type]
                extra_body={"webhook_url": "http://127.0.0.1:9/hook"},
                extra_headers={"Idempotency-Key": "sdk-1"},
            )
            for _ in range(2)
        ]
    assert made[0].id == made[1].id
    from app.jobs.models import Job

    row = db_session.get(Job, made[0].id)
    assert (row.width, row.webhook_url) == (128, "http://127.0.0.1:9/hook")
