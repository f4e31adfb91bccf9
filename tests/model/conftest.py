"""Fixtures for the model library: one tiny Wan pipeline, built and loaded once per test session."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from model.config import GenerationRequest
from model.pipeline import LoadedModel, load_pipeline
from model.registry import BUILTIN_TINY_WAN


@pytest.fixture(scope="session")
def tiny_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache directory holding the built tiny Wan (built by the `tiny_model` fixture)."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def tiny_model(tiny_cache_dir: Path) -> LoadedModel:
    """The built-in tiny Wan, built into a temporary cache and loaded through the real loading path."""
    return load_pipeline(BUILTIN_TINY_WAN, cache_dir=tiny_cache_dir, device="cpu")


def small_request(**changes: object) -> GenerationRequest:
    """A request small enough to run in a fraction of a second on 2 CPU cores."""
    values: dict[str, object] = {
        "prompt": "a paper boat on a pond",
        "width": 64,
        "height": 64,
        "num_frames": 9,
        "fps": 8,
        "num_inference_steps": 2,
        "guidance_scale": 5.0,
        "seed": 7,
    }
    values.update(changes)
    return GenerationRequest(**values)  # type: ignore[arg-type]


def short_passes(model: LoadedModel, frames: int = 17) -> LoadedModel:
    """The same pipeline with one pass limited to `frames`, so short requests already chain segments."""
    return replace(model, spec=replace(model.spec, max_frames_per_pass=frames))
