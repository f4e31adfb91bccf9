"""Building and loading the tiny Wan: deterministic, atomic, and loaded by diffusers from disk."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model.config import ModelError
from model.pipeline import TINY_WAN_DIRNAME, LoadedModel, build_tiny_wan, load_pipeline, pick_device_and_dtype

COMPONENT_WEIGHTS = (
    "transformer/diffusion_pytorch_model.safetensors",
    "vae/diffusion_pytorch_model.safetensors",
    "text_encoder/model.safetensors",
)


def test_build_is_deterministic(tmp_path: Path, tiny_model: LoadedModel, tiny_cache_dir: Path) -> None:
    before = torch.random.get_rng_state()
    build_tiny_wan(tmp_path / "again")
    assert torch.equal(torch.random.get_rng_state(), before), "building must not touch the global RNG"
    first = tiny_cache_dir / TINY_WAN_DIRNAME
    for name in COMPONENT_WEIGHTS:
        a, b = load_file(first / name), load_file(tmp_path / "again" / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[key], b[key]) for key in a), name
    assert json.loads((first / "model_index.json").read_text())["_class_name"] == "WanPipeline"


def test_build_leaves_no_partial_directory_and_skips_a_finished_one(tmp_path: Path) -> None:
    target = tmp_path / "tiny"
    build_tiny_wan(target)
    stamp = (target / "model_index.json").stat().st_mtime_ns
    build_tiny_wan(target)
    assert (target / "model_index.json").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]


def test_concurrent_builds_both_succeed_with_one_complete_directory(tmp_path: Path) -> None:
    target = tmp_path / "tiny"
    errors: list[BaseException] = []

    def build() -> None:
        try:
            build_tiny_wan(target)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]
    assert all((target / name).is_file() for name in COMPONENT_WEIGHTS)


def test_loaded_model_round_trips_the_saved_weights(tiny_model: LoadedModel, tiny_cache_dir: Path) -> None:
    pipe = tiny_model.pipe
    assert type(pipe).__name__ == "WanPipeline"
    assert tiny_model.spec.family == "wan"
    assert (tiny_model.device, tiny_model.dtype) == (torch.device("cpu"), torch.float32)
    saved = load_file(tiny_cache_dir / TINY_WAN_DIRNAME / COMPONENT_WEIGHTS[0])
    loaded = pipe.transformer.state_dict()
    assert all(torch.equal(saved[key], loaded[key]) for key in saved)
    assert pipe.vae.config.base_dim == 4


def test_pick_device_and_dtype_matches_the_machine() -> None:
    device, dtype = pick_device_and_dtype()
    if torch.cuda.is_available():
        assert (device.type, dtype) == ("cuda", torch.bfloat16)
    else:
        assert (device.type, dtype) == ("cpu", torch.float32)


def test_unknown_model_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a built-in model"):
        load_pipeline(str(tmp_path / "nothing-here"), cache_dir=tmp_path)


def test_pipeline_directory_without_weights_is_a_model_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    with pytest.raises(ModelError, match="could not load WanPipeline"):
        load_pipeline(str(broken), cache_dir=tmp_path)


def test_local_directory_loads_with_its_own_spec(tiny_model: LoadedModel, tiny_cache_dir: Path) -> None:
    path = str(tiny_cache_dir / TINY_WAN_DIRNAME)
    loaded = load_pipeline(path, cache_dir=tiny_cache_dir / "unused", device="cpu")
    assert loaded.spec.id == path
    assert type(loaded.pipe).__name__ == "WanPipeline"
    assert not (tiny_cache_dir / "unused").exists()
