"""Several served models (KINEMA_MODELS): /v1/models lists them, requests name one, each has its own queue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app.config import Settings, get_settings
from app.jobs.models import Job
from app.model_options import ModelOptions
from app.served_models import generation_queues, queue_for, served_options, served_paths

MOCHI = "tiny-mochi"


@pytest.fixture
def two_models(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """The built-in tiny Wan (the default) and a Mochi directory served as `tiny-mochi`.

    The gateway reads only a directory's `model_index.json` (the workers load the weights; see
    tests/e2e/test_model_zoo.py for a real Mochi checkpoint run end to end).
    """
    mochi = tmp_path / "mochi"
    mochi.mkdir()
    (mochi / "model_index.json").write_text(json.dumps({"_class_name": "MochiPipeline"}))
    monkeypatch.setenv("KINEMA_MODELS", json.dumps({MOCHI: {"path": str(mochi)}}))
    get_settings.cache_clear()
    return get_settings()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"a": "/m/a", "b": {"path": "/m/b"}}', {"a": "/m/a", "b": "/m/b"}),
        ("a=/m/a, b=/m/b", {"a": "/m/a", "b": "/m/b"}),
        ("", {}),
    ],
)
def test_kinema_models_reads_json_or_id_equals_path(
    raw: str, expected: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KINEMA_MODELS", raw)
    settings = Settings()
    assert {model_id: entry.path for model_id, entry in settings.models.items()} == expected
    assert all(entry.options == ModelOptions() for entry in settings.models.values())  # none given


def test_kinema_models_refuses_an_entry_without_a_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KINEMA_MODELS", "a=/m/a,b")
    with pytest.raises(ValidationError, match="id=path"):
        Settings()


def test_kinema_models_reads_options_next_to_a_path(monkeypatch: pytest.MonkeyPatch) -> None:
    options = {
        "default_steps": 30,
        "default_guidance": 4.0,
        "default_fps": 12,
        "max_frames_total": 97,
        "dtype": "bf16",
        "cpu_offload": True,
        "enable_vae_tiling": True,
    }
    raw = {"plain": "/m/plain", "tuned": {"path": "/m/tuned", "options": options}}
    monkeypatch.setenv("KINEMA_MODELS", json.dumps(raw))
    settings = Settings()
    default = settings.model_id  # the shipped model unless the environment names another
    assert served_paths(settings) == {default: None, "plain": "/m/plain", "tuned": "/m/tuned"}
    assert served_options("tuned", settings) == ModelOptions.model_validate(options)
    # A model with no options, and one not in KINEMA_MODELS at all, keep the registry's and settings' values.
    assert served_options("plain", settings) == served_options(default, settings) == ModelOptions()


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"path": "/m", "options": {"default_steps": 0}}, ["options.default_steps", "greater than"]),
        ({"path": "/m", "options": {"default_fps": "fast"}}, ["options.default_fps"]),
        ({"path": "/m", "options": {"dtype": "int8"}}, ["options.dtype", "bf16"]),
        ({"path": "/m", "options": {"cpu_offload": "yes"}}, ["options.cpu_offload"]),
        ({"path": "/m", "options": {"steps": 30}}, ["options.steps", "not permitted"]),
        ({"path": "/m", "options": {"max_frames_total": -1}}, ["options.max_frames_total"]),
        ({"options": {"default_steps": 30}}, ["path", "required"]),
        ({"path": "/m", "options": {"default_steps": 500}}, ["options.default_steps", "KINEMA_MAX_STEPS"]),
        ({"path": "/m", "options": {"default_fps": 240}}, ["options.default_fps", "KINEMA_MAX_FPS"]),
    ],
)
def test_a_bad_model_option_is_refused_when_settings_load_naming_model_and_key(
    monkeypatch: pytest.MonkeyPatch, entry: dict[str, Any], words: list[str]
) -> None:
    monkeypatch.setenv("KINEMA_MODELS", json.dumps({"fine": "/m/fine", "wan-14b": entry}))
    with pytest.raises(ValidationError) as raised:
        Settings()
    message = str(raised.value)
    assert all(word in message for word in ["KINEMA_MODELS", "'wan-14b'", *words]), message
    assert "'fine'" not in message


def test_each_model_has_its_own_queue_and_the_default_keeps_the_old_one() -> None:
    settings = Settings(queue_name="gen", models={"mochi": "/m", "Org/Model v2": "/n", "org-model-v2": "/o"})
    assert queue_for(settings.model_id, settings) == "gen"
    assert queue_for("mochi", settings) == "gen.mochi"
    odd, plain = queue_for("Org/Model v2", settings), queue_for("org-model-v2", settings)
    assert odd.startswith("gen.org-model-v2-") and plain == "gen.org-model-v2"
    assert generation_queues(settings) == ["gen", "gen.mochi", odd, plain]
    assert list(served_paths(settings)) == [settings.model_id, "mochi", "Org/Model v2", "org-model-v2"]


def test_models_lists_every_served_model_with_its_rules(
    two_models: Settings, client: Any, make_key: Any
) -> None:
    _, key = make_key()
    body = client.get("/v1/models", headers=_auth(key)).json()
    assert [model["id"] for model in body["data"]] == ["builtin:tiny-wan", MOCHI]
    wan, mochi = (model["capabilities"] for model in body["data"])
    assert (wan["default"], mochi["default"]) == (True, False)
    assert (mochi["family"], mochi["pipeline"], mochi["frame_step"]) == ("mochi", "MochiPipeline", 6)
    assert (mochi["modes"], mochi["fps"], mochi["default_size"]) == (["text"], 30, "848x480")
    one = client.get(f"/v1/models/{MOCHI}", headers=_auth(key))
    assert one.status_code == 200 and one.json()["capabilities"] == mochi


def test_a_job_goes_to_its_models_queue(
    two_models: Settings, client: Any, make_key: Any, db_session: Any, redis_client: Any
) -> None:
    _, key = make_key()
    default_queue, mochi_queue = generation_queues(two_models)
    before = (redis_client.llen(default_queue), redis_client.llen(mochi_queue))
    wan = client.post("/generate", headers=_auth(key), json={"prompt": "a red ball", "duration": 1})
    assert wan.status_code == 202, wan.text
    mochi = client.post(
        "/generate", headers=_auth(key), json={"prompt": "a red ball", "duration": 1, "model": MOCHI}
    )
    assert mochi.status_code == 202, mochi.text
    job = mochi.json()
    # The queue position counts the model's own queue: the Wan job ahead is not in it.
    assert job["queue_position"] == 0
    params = job["parameters"]
    assert (job["model"], params["width"], params["height"], params["fps"]) == (MOCHI, 848, 480, 30)
    assert (params["num_inference_steps"], params["guidance_scale"]) == (64, 4.5)
    assert db_session.get(Job, job["id"]).model == MOCHI
    assert (redis_client.llen(default_queue), redis_client.llen(mochi_queue)) == (
        before[0] + 1,
        before[1] + 1,
    )
    task = json.loads(redis_client.lindex(mochi_queue, 0))  # the newest task in the Mochi queue
    assert job["id"] in task["headers"]["argsrepr"]


@pytest.mark.parametrize(
    ("body", "param", "code", "words"),
    [
        ({"model": "sora-2"}, "model", "model_not_found", ["sora-2", MOCHI]),
        # Mochi makes one pass of 163 frames: 5.4 s at 30 fps.
        ({"model": MOCHI, "duration": 6}, "duration", "invalid_value", [MOCHI, "5.4"]),
        # Text to video only: an image-to-video request names the field and the model.
        (
            {"model": MOCHI, "image_url": "https://example.com/first.png"},
            "image_url",
            "unsupported_mode",
            [MOCHI, "image"],
        ),
    ],
)
def test_a_request_the_model_cannot_serve_is_a_400_naming_field_and_model(
    two_models: Settings,
    client: Any,
    make_key: Any,
    redis_client: Any,
    body: dict[str, Any],
    param: str,
    code: str,
    words: list[str],
) -> None:
    _, key = make_key()
    queued = [redis_client.llen(queue) for queue in generation_queues(two_models)]
    response = client.post("/generate", headers=_auth(key), json={"prompt": "a red ball", **body})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, code)
    assert all(word in error["message"] for word in words), error["message"]
    assert [redis_client.llen(queue) for queue in generation_queues(two_models)] == queued


def test_a_worker_for_a_model_takes_only_that_models_queue(two_models: Settings) -> None:
    from app.cli import worker_command

    command = worker_command(queues=("generate",), model=MOCHI)
    assert command[command.index("--queues") + 1] == f"{two_models.queue_name}.{MOCHI}"
    default = worker_command(queues=("generate", "webhooks"))
    assert (
        default[default.index("--queues") + 1] == f"{two_models.queue_name},{two_models.webhook_queue_name}"
    )


def test_kinema_worker_refuses_a_model_not_served(two_models: Settings) -> None:
    from typer.testing import CliRunner

    from app.cli import cli

    result = CliRunner().invoke(cli, ["worker", "--model", "sora-2"])
    assert result.exit_code == 2
    assert "sora-2" in result.output and MOCHI in result.output


def test_v1_videos_names_a_model_too_and_sora_names_mean_the_default(
    two_models: Settings, client: Any, make_key: Any
) -> None:
    _, key = make_key()
    for model, served in ((MOCHI, MOCHI), ("sora-2", "builtin:tiny-wan")):
        response = client.post(
            "/v1/videos", headers=_auth(key), data={"prompt": "a red ball", "model": model}
        )
        assert response.status_code == 200, response.text
        assert response.json()["model"] == served


@pytest.fixture
def tuned_mochi(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """`tiny-mochi` served with its own defaults and a lower frame cap (KINEMA_MODELS options)."""
    mochi = tmp_path / "mochi"
    mochi.mkdir()
    (mochi / "model_index.json").write_text(json.dumps({"_class_name": "MochiPipeline"}))
    options = {"default_steps": 12, "default_guidance": 2.5, "default_fps": 10, "max_frames_total": 64}
    monkeypatch.setenv("KINEMA_MODELS", json.dumps({MOCHI: {"path": str(mochi), "options": options}}))
    get_settings.cache_clear()
    return get_settings()


def test_model_options_change_the_defaults_and_limits_the_api_lists(
    tuned_mochi: Settings, client: Any, make_key: Any
) -> None:
    _, key = make_key()
    wan, mochi = (
        model["capabilities"] for model in client.get("/v1/models", headers=_auth(key)).json()["data"]
    )
    assert (mochi["fps"], mochi["default_steps"], mochi["default_guidance"]) == (10, 12, 2.5)
    # The cap, 64, rounded down to Mochi's 6k+1 rule: 61 frames, 6 s at 10 fps (163 and 16 s without it).
    assert (mochi["max_frames_total"], mochi["max_frames_per_pass"], mochi["max_seconds"]) == (61, 61, 6)
    # The other model keeps the registry's values.
    assert (wan["fps"], wan["default_steps"], wan["max_frames_total"]) == (8, 10, 481)


def test_model_options_are_the_defaults_a_request_gets_and_the_cap_it_meets(
    tuned_mochi: Settings, client: Any, make_key: Any
) -> None:
    _, key = make_key()
    body = {"prompt": "a red ball", "model": MOCHI}
    job = client.post("/generate", headers=_auth(key), json={**body, "duration": 2})
    assert job.status_code == 202, job.text
    params = job.json()["parameters"]
    assert (params["fps"], params["num_inference_steps"], params["guidance_scale"]) == (10, 12, 2.5)
    assert params["num_frames"] == 20
    # What a request says still wins over the model's defaults.
    explicit = {**body, "duration": 1, "fps": 24, "num_inference_steps": 3, "guidance_scale": 7}
    params = client.post("/generate", headers=_auth(key), json=explicit).json()["parameters"]
    assert (params["fps"], params["num_inference_steps"], params["guidance_scale"]) == (24, 3, 7.0)
    # 6.5 s at 10 fps is 65 frames: over the cap (Mochi alone would allow 16 s at this rate).
    refused = client.post("/generate", headers=_auth(key), json={**body, "duration": 6.5})
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["param"] == "duration" and MOCHI in error["message"] and "6 s" in error["message"]
