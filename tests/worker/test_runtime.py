"""The worker reads its speed switches from settings and runs jobs with them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from app.api_keys import service as keys
from app.config import Settings
from app.db import session_scope
from app.jobs.models import Job
from app.jobs.runs import ClaimResult
from app.jobs.service import new_job_id
from model.config import InferenceOptions
from tests.conftest import clear_caches
from tests.model.tiny_families import save_tiny
from worker.runtime import inference_options

SWITCHES = {
    "KINEMA_DTYPE": "fp32",
    "KINEMA_ATTENTION_BACKEND": "_native_math",
    "KINEMA_COMPILE": "none",
    "KINEMA_CFG_BATCH": "true",
    "KINEMA_STEP_CACHE": "first_block",
    "KINEMA_STEP_CACHE_THRESHOLD": "0.08",
    "KINEMA_VAE_TILING": "true",
    "KINEMA_VIDEO_ENCODER": "auto",
}


def test_default_settings_are_the_plain_options(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SWITCHES:
        monkeypatch.delenv(name, raising=False)
    assert inference_options(Settings(_env_file=None)) == InferenceOptions()


def test_kinema_env_vars_set_each_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SWITCHES.items():
        monkeypatch.setenv(name, value)
    assert inference_options(Settings(_env_file=None)) == InferenceOptions(
        dtype="fp32",
        attention_backend="_native_math",
        compile="none",
        cfg_batch=True,
        step_cache="first_block",
        step_cache_threshold=0.08,
        vae_tiling=True,
        video_encoder="auto",
    )


def test_a_models_options_take_the_place_of_the_switches_for_that_model_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in SWITCHES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KINEMA_DTYPE", "fp32")
    monkeypatch.setenv("KINEMA_VAE_TILING", "true")
    options = {"dtype": "bf16", "cpu_offload": True, "enable_vae_tiling": False}
    monkeypatch.setenv("KINEMA_MODELS", json.dumps({"big": {"path": "/m/big", "options": options}}))
    settings = Settings(_env_file=None)
    assert inference_options(settings, "big") == InferenceOptions(dtype="bf16", cpu_offload=True)
    assert inference_options(settings, "builtin:tiny-wan") == InferenceOptions(dtype="fp32", vae_tiling=True)


def test_the_worker_loads_a_model_with_its_options(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from worker import runtime

    mochi = save_tiny("mochi", tmp_path / "mochi")
    options = {"dtype": "bf16", "enable_vae_tiling": True, "cpu_offload": True}
    monkeypatch.setenv("KINEMA_MODELS", json.dumps({"tiny-mochi": {"path": str(mochi), "options": options}}))
    monkeypatch.setenv("KINEMA_MODEL_CACHE_DIR", str(tmp_path / "cache"))
    clear_caches()
    loaded = runtime.get_model("tiny-mochi")
    assert loaded.spec.pipeline_class == "MochiPipeline"
    assert loaded.dtype == torch.bfloat16 and loaded.pipe.transformer.dtype == torch.bfloat16
    assert loaded.pipe.vae.use_tiling
    # Offloading needs a GPU: on the CPU the option is kept but the pipeline simply runs where it is.
    assert loaded.options.cpu_offload and loaded.device.type == "cpu"


def test_a_bad_switch_value_is_refused_by_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KINEMA_STEP_CACHE", "teacache")
    with pytest.raises(ValueError, match="step_cache"):
        Settings(_env_file=None)


def test_a_job_runs_with_the_switches_the_settings_name(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker import runtime
    from worker.execution import execute

    for name, value in SWITCHES.items():
        monkeypatch.setenv(name, value)
    clear_caches()
    with session_scope() as session:
        key = keys.create_key(session, "switches").row
        job_id = new_job_id()
        session.add(
            Job(
                id=job_id,
                api_key_id=key.id,
                model="builtin:tiny-wan",
                prompt="a red ball",
                duration_s=1.0,
                width=96,
                height=64,
                fps=8,
                num_frames=8,
                seed=5,
                num_inference_steps=6,
                guidance_scale=5.0,
            )
        )
        session.commit()
    assert execute(job_id) is ClaimResult.CLAIMED
    with session_scope() as session:
        row: Any = session.get(Job, job_id)
        assert (row.status, row.output_frames) == ("succeeded", 8)
    loaded = runtime.get_model("builtin:tiny-wan")
    assert loaded.options.cfg_batch and loaded.pipe.vae.use_tiling
    stats = loaded.step_cache_stats
    assert stats is not None and stats.passes == 6  # one batched pass per step: the switches were on
