"""Asking for a soundtrack: `audio` and `audio_prompt` on POST /generate, extend, remix and POST /v1/videos;
stored with the job and shown in its JSON; refused (naming the field) where the deployment has no audio
model, and the audio prompt moderated like the prompt."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app.db import utcnow
from app.jobs.models import Job


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _queued(redis_client: Any, env: dict[str, str]) -> int:
    return int(redis_client.llen(env["KINEMA_QUEUE_NAME"]))


@pytest.fixture
def no_audio_model(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from app.config import get_settings

    monkeypatch.setenv("KINEMA_AUDIO_MODEL", "")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_audio_is_off_unless_asked_for(client: Any, make_key: Any) -> None:
    _, key = make_key()
    job = client.post("/generate", json={"prompt": "a quiet lake"}, headers=_auth(key)).json()
    assert (job["parameters"]["audio"], job["parameters"]["audio_prompt"]) == (False, None)


def test_audio_and_its_prompt_are_stored_and_shown(client: Any, make_key: Any, db_session: Any) -> None:
    _, key = make_key()
    response = client.post(
        "/generate", json={"prompt": "a harbour at dawn", "audio": True, "duration": 2}, headers=_auth(key)
    )
    assert response.status_code == 202, response.text
    assert (response.json()["parameters"]["audio"], response.json()["parameters"]["audio_prompt"]) == (
        True,
        None,
    )
    prompted = client.post(
        "/generate",
        json={"prompt": "a harbour at dawn", "audio_prompt": "  gulls and a distant foghorn "},
        headers=_auth(key),
    ).json()
    assert (prompted["parameters"]["audio"], prompted["parameters"]["audio_prompt"]) == (
        True,
        "gulls and a distant foghorn",
    )
    stored = db_session.get(Job, prompted["id"])
    assert (stored.audio, stored.audio_prompt) == (True, "gulls and a distant foghorn")
    read = client.get(f"/jobs/{prompted['id']}", headers=_auth(key)).json()
    assert read["parameters"]["audio_prompt"] == "gulls and a distant foghorn" and read["output"] is None


def test_a_finished_jobs_output_says_it_has_audio(client: Any, make_key: Any, make_job: Any) -> None:
    row, key = make_key()
    finished = {
        "status": "succeeded",
        "video_key": "videos/x.mp4",
        "output_frames": 16,
        "finished_at": utcnow(),
    }
    with_audio = make_job(
        row,
        audio=True,
        output_audio_codec="aac",
        output_audio_sample_rate=44100,
        output_audio_channels=2,
        **finished,
    )
    silent = make_job(row, **finished)
    output = client.get(f"/jobs/{with_audio.id}", headers=_auth(key)).json()["output"]
    assert (
        output["audio"],
        output["audio_codec"],
        output["audio_sample_rate"],
        output["audio_channels"],
    ) == (
        True,
        "aac",
        44100,
        2,
    )
    output = client.get(f"/jobs/{silent.id}", headers=_auth(key)).json()["output"]
    assert (output["audio"], output["audio_codec"], output["audio_sample_rate"]) == (False, None, None)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"audio_prompt": ""}, "audio_prompt"),
        ({"audio_prompt": "   "}, "audio_prompt"),
        ({"audio_prompt": "x" * 2001}, "audio_prompt"),
        ({"audio_prompt": 5}, "audio_prompt"),
        ({"audio": "yes"}, "audio"),
        ({"audio": False, "audio_prompt": "rain"}, "audio_prompt"),
    ],
)
def test_bad_audio_fields_are_400s_naming_them(
    client: Any,
    make_key: Any,
    redis_client: Any,
    settings_env: dict[str, str],
    body: dict[str, Any],
    param: str,
) -> None:
    _, key = make_key()
    before = _queued(redis_client, settings_env)
    response = client.post("/generate", json={"prompt": "a cat", **body}, headers=_auth(key))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert _queued(redis_client, settings_env) == before


def test_without_an_audio_model_asking_for_audio_is_refused_naming_audio(
    no_audio_model: None, client: Any, make_key: Any, redis_client: Any, settings_env: dict[str, str]
) -> None:
    _, key = make_key()
    before = _queued(redis_client, settings_env)
    response = client.post("/generate", json={"prompt": "a storm", "audio": True}, headers=_auth(key))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("audio", "audio_unavailable")
    assert "no audio model" in error["message"] and "KINEMA_AUDIO_MODEL" in error["message"]
    prompted = client.post(
        "/generate", json={"prompt": "a storm", "audio_prompt": "thunder"}, headers=_auth(key)
    )
    assert prompted.status_code == 400 and prompted.json()["error"]["param"] == "audio_prompt"
    openai = client.post("/v1/videos", json={"prompt": "a storm", "audio": True}, headers=_auth(key))
    assert openai.status_code == 400 and openai.json()["error"]["param"] == "audio"
    assert _queued(redis_client, settings_env) == before
    # Video alone is still fine.
    assert client.post("/generate", json={"prompt": "a storm"}, headers=_auth(key)).status_code == 202


def test_the_audio_prompt_is_moderated_like_the_prompt(client: Any, make_key: Any, db_session: Any) -> None:
    _, key = make_key()
    blocked = client.post(
        "/generate",
        json={"prompt": "a quiet street", "audio_prompt": "screams and gore everywhere"},
        headers=_auth(key),
    )
    assert blocked.status_code == 400, blocked.text
    error = blocked.json()["error"]
    assert (error["code"], error["param"]) == ("moderation_blocked", "audio_prompt")
    assert "audio prompt" in error["message"]


def test_extend_and_remix_take_audio(client: Any, make_key: Any, make_job: Any) -> None:
    row, key = make_key()
    parent = make_job(
        row,
        status="succeeded",
        width=160,
        height=96,
        video_key="videos/parent.mp4",
        output_frames=16,
        output_duration_s=2.0,
        finished_at=utcnow(),
    )
    extended = client.post(
        f"/jobs/{parent.id}/extend",
        json={"prompt": "the rain stops", "duration": 1, "audio_prompt": "dripping water"},
        headers=_auth(key),
    )
    assert extended.status_code == 202, extended.text
    assert extended.json()["parameters"]["audio_prompt"] == "dripping water"
    remixed = client.post(
        f"/jobs/{parent.id}/remix", json={"prompt": "at night", "audio": True}, headers=_auth(key)
    )
    assert remixed.status_code == 202 and remixed.json()["parameters"]["audio"] is True


def test_openai_create_takes_audio_as_json_and_as_form_fields(
    client: Any, make_key: Any, db_session: Any
) -> None:
    _, key = make_key()
    as_json = client.post(
        "/v1/videos", json={"prompt": "a campfire", "audio_prompt": "crackling fire"}, headers=_auth(key)
    )
    assert as_json.status_code == 200, as_json.text
    stored = db_session.get(Job, as_json.json()["id"])
    assert (stored.audio, stored.audio_prompt) == (True, "crackling fire")
    as_form = client.post(
        "/v1/videos", data={"prompt": "a campfire", "audio": "true", "seconds": "2"}, headers=_auth(key)
    )
    assert as_form.status_code == 200, as_form.text
    stored = db_session.get(Job, as_form.json()["id"])
    assert (stored.audio, stored.audio_prompt) == (True, None)
