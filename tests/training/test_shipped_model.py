"""The shipped model `builtin:kinema-shapes` (model/checkpoints/kinema-shapes): stock diffusers loads it
from the repository, it is small, and what it draws follows the prompt as the classical detector reads it.

The prompts below are held-out colour-shape-motion triples (`model.training.data.HELD_OUT`): no training
clip showed them. bench/adherence.py measures the same over many prompts and seeds; these few fixed
cases are the regression check that the checkpoint and Kinema's generation path still work together.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import WanPipeline
from safetensors import safe_open

from app.config import Settings
from model.config import GenerationRequest
from model.generate import generate
from model.pipeline import LoadedModel, load_pipeline
from model.registry import BUILTIN_KINEMA_SHAPES, KINEMA_SHAPES_PATH, get_spec
from model.training.data import HELD_OUT, ClipConfig, ShapeSpec, describe, render
from model.training.detector import detect

MAX_BYTES = 20 * 1024 * 1024


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_pipeline(BUILTIN_KINEMA_SHAPES, cache_dir=tmp_path_factory.mktemp("cache"), device="cpu")


def clip_for(loaded: LoadedModel, prompt: str, seed: int, image: np.ndarray | None = None) -> np.ndarray:
    """A 2 s clip (17 frames at 8 fps, 64x64) through Kinema's own generation path."""
    request = GenerationRequest(
        prompt=prompt,
        width=64,
        height=64,
        num_frames=17,
        fps=8,
        num_inference_steps=loaded.spec.default_steps,
        guidance_scale=loaded.spec.default_guidance,
        seed=seed,
        model_id=loaded.spec.id,
        image=image,
    )
    return np.stack(list(generate(request, model=loaded)))


def test_the_checkpoint_is_a_stock_wan_pipeline_of_fp16_weights_under_20_mb() -> None:
    files = [path for path in KINEMA_SHAPES_PATH.rglob("*") if path.is_file()]
    assert sum(path.stat().st_size for path in files) <= MAX_BYTES
    for weights in (path for path in files if path.suffix == ".safetensors"):
        with safe_open(str(weights), framework="pt") as tensors:
            assert {tensors.get_tensor(k).dtype for k in tensors.keys()} == {torch.float16}  # noqa: SIM118
    pipe = WanPipeline.from_pretrained(KINEMA_SHAPES_PATH, dtype=torch.float32, local_files_only=True)
    frames = pipe(
        "a green triangle moving to the right on a black background",
        height=64,
        width=64,
        num_frames=17,
        num_inference_steps=get_spec(BUILTIN_KINEMA_SHAPES).default_steps,
        generator=torch.Generator("cpu").manual_seed(0),
        output_type="np",
    ).frames[0]
    found = detect((frames * 255).round().astype(np.uint8))
    assert (found.colour, found.motion) == ("green", "right"), found


@pytest.mark.parametrize(
    ("colour", "shape", "motion", "background"),
    [("red", "star", "up", "navy"), ("cyan", "star", "left", "gray"), ("purple", "square", "right", "black")],
)
def test_a_held_out_prompt_gets_its_colour_and_direction(
    loaded: LoadedModel, colour: str, shape: str, motion: str, background: str
) -> None:
    assert (colour, shape, motion) in HELD_OUT
    found = detect(clip_for(loaded, describe(colour, shape, motion, background), seed=0))
    assert (found.colour, found.motion) == (colour, motion), found


def test_image_to_video_keeps_the_shape_and_colour_and_moves_as_asked(loaded: LoadedModel) -> None:
    # A held-out triple, as a still first frame with room to move left.
    assert ("orange", "circle", "left") in HELD_OUT
    spec = ShapeSpec(colour="orange", shape="circle", motion="still", x=44.8, y=32.0, size=10.24, travel=0.0)
    image = render("navy", (spec,), ClipConfig(width=64, height=64, num_frames=1))[0]
    prompt = describe("orange", "circle", "left", "navy")
    found = detect(clip_for(loaded, prompt, seed=0, image=image))
    assert (found.colour, found.shape, found.motion) == ("orange", "circle", "left"), found


def test_it_is_the_embedded_default_and_refuses_sizes_it_was_not_trained_for() -> None:
    assert Settings.model_fields["model_id"].default == BUILTIN_KINEMA_SHAPES
    spec = get_spec(BUILTIN_KINEMA_SHAPES)
    assert Path(str(spec.path)) == KINEMA_SHAPES_PATH
    assert (spec.default_width, spec.default_height, spec.default_fps) == (64, 64, 8)
    assert (spec.max_width, spec.max_height) == (128, 128)
