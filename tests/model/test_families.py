"""The model zoo: tiny checkpoints of other families, saved to disk, loaded through the registry and run.

Each family's frame rule and size rule come from its registry row; a real (tiny, random-weight) pipeline
of that class is saved like a downloaded checkpoint, loaded by the same code as a production model, and
generates frames that follow the rules.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from model.conditioning import fit_frame
from model.config import ModelError
from model.generate import generate
from model.pipeline import LoadedModel, load_pipeline
from model.registry import EXTEND, IMAGE, TEXT, UnknownModelError, get_spec
from tests.model.conftest import short_passes, small_request
from tests.model.tiny_families import TINY_FAMILIES, save_tiny


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("zoo")
    return {family: save_tiny(family, root / family) for family in TINY_FAMILIES}


@pytest.fixture(scope="module")
def loaded(family_dirs: dict[str, Path], tiny_cache_dir: Path) -> dict[str, LoadedModel]:
    # Served under a name of the deployment's choosing, as KINEMA_MODELS does.
    return {
        family: load_pipeline(f"tiny-{family}", path=str(path), cache_dir=tiny_cache_dir, device="cpu")
        for family, path in family_dirs.items()
    }


@pytest.mark.parametrize(
    ("pipeline_class", "family", "frame_step", "multiple", "fps", "steps", "guidance"),
    [
        ("HunyuanVideoPipeline", "hunyuanvideo", 4, 16, 15, 50, 6.0),
        ("MochiPipeline", "mochi", 6, 16, 30, 64, 4.5),
        ("TextToVideoSDPipeline", "modelscope", 1, 8, 8, 50, 9.0),
        ("WanVACEPipeline", "wan-vace", 4, 16, 16, 50, 5.0),
        ("LTXConditionPipeline", "ltx-condition", 8, 32, 24, 50, 3.0),
    ],
)
def test_each_family_directory_gets_its_rules(
    tmp_path: Path,
    pipeline_class: str,
    family: str,
    frame_step: int,
    multiple: int,
    fps: int,
    steps: int,
    guidance: float,
) -> None:
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": pipeline_class}))
    spec = get_spec("served-name", str(tmp_path))
    assert spec.id == "served-name"
    assert spec.path == str(tmp_path.resolve())
    assert (spec.family, spec.frame_step, spec.spatial_multiple) == (family, frame_step, multiple)
    assert (spec.default_fps, spec.default_steps, spec.default_guidance) == (fps, steps, guidance)
    # One pass of text to video: these pipelines take no frames to condition on here.
    assert spec.modes == (TEXT,)
    assert spec.max_frames_total == spec.max_frames_per_pass


def test_a_builtin_served_under_another_name_keeps_its_rules() -> None:
    spec = get_spec("wan-small", "builtin:tiny-wan")
    assert (spec.id, spec.family, spec.pipeline_class) == ("wan-small", "wan", "WanPipeline")


def test_an_unknown_pipeline_class_names_the_supported_ones(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(UnknownModelError, match="MochiPipeline"):
        get_spec("sd", str(tmp_path))


@pytest.mark.parametrize(
    ("family", "pipeline_class", "seconds", "fps", "frames_made", "generation_size"),
    # 1.25 s at 8 fps is 10 frames: each family makes the next count its frame rule allows. 72x40 is off
    # every latent grid: the pipeline runs at the size rounded up to it and each frame is cropped back.
    [
        ("hunyuanvideo", "HunyuanVideoPipeline", 1.25, 8, 13, (80, 48)),  # 4k+1, 16 px
        ("mochi", "MochiPipeline", 1.0, 6, 7, (80, 48)),  # 6k+1, 16 px
        ("modelscope", "TextToVideoSDPipeline", 5 / 8, 8, 5, (72, 40)),  # any count, 8 px
        ("wan-vace", "WanVACEPipeline", 1.25, 8, 13, (80, 48)),  # 4k+1, 16 px
        ("ltx", "LTXPipeline", 1.25, 8, 17, (96, 64)),  # 8k+1, 32 px
        ("ltx-condition", "LTXConditionPipeline", 1.25, 8, 17, (96, 64)),  # 8k+1, 32 px
        ("cogvideox", "CogVideoXPipeline", 1.25, 8, 17, (80, 48)),  # 8k+1 (odd latent count), 16 px
    ],
)
def test_a_saved_family_checkpoint_generates_frames_by_its_rules(
    loaded: dict[str, LoadedModel],
    family: str,
    pipeline_class: str,
    seconds: float,
    fps: int,
    frames_made: int,
    generation_size: tuple[int, int],
) -> None:
    model = loaded[family]
    assert model.spec.id == f"tiny-{family}"
    assert model.pipe.__class__.__name__ == model.spec.pipeline_class == pipeline_class
    assert TEXT in model.spec.modes
    num_frames = model.spec.num_frames_for(seconds, fps)
    assert num_frames == frames_made
    assert model.spec.generation_size(72, 40) == generation_size
    steps: list[object] = []
    request = small_request(model_id=model.spec.id, num_frames=num_frames, fps=fps, width=72, height=40)
    frames = list(generate(request, steps.append, model=model))
    assert len(frames) == frames_made
    assert {frame.shape for frame in frames} == {(40, 72, 3)}
    assert frames[0].std() > 0  # random weights still draw something, not a blank frame
    assert len(steps) == request.num_inference_steps + 1  # every denoising step, then the decode
    # The same request gives the same frames (a seeded CPU generator, whatever the pipeline).
    assert np.array_equal(frames[-1], list(generate(request, model=model))[-1])


@pytest.mark.parametrize("family", sorted(TINY_FAMILIES))
def test_each_pipeline_makes_exactly_the_frames_and_size_its_rule_allows(
    loaded: dict[str, LoadedModel], family: str
) -> None:
    # The pipeline itself, without `generate`'s cropping and counting: two valid frame counts, each made
    # exactly, at the generation size exactly (a wrong rule shows as extra frames or a smaller frame).
    spec = loaded[family].spec
    pipe: Any = loaded[family].pipe  # each pipeline class has its own __call__
    width, height = spec.generation_size(72, 40)
    extra = {"image": Image.new("RGB", (width, height))} if IMAGE in spec.modes else {}
    for num_frames in (spec.frame_step + 1, 2 * spec.frame_step + 1):
        video = pipe(
            prompt="a paper boat",
            width=width,
            height=height,
            num_frames=num_frames,
            num_inference_steps=2,  # Mochi's schedule divides by steps - 1
            output_type="np",
            **extra,
        ).frames
        assert np.asarray(video).shape[1:4] == (num_frames, height, width), num_frames


def test_cogvideox_decodes_an_even_latent_count_to_more_frames_than_asked(
    loaded: dict[str, LoadedModel],
) -> None:
    # Why CogVideoX's rule is 8k+1, not 4k+1: 13 frames are 4 latent frames, which decode to 16.
    model = loaded["cogvideox"]
    pipe: Any = model.pipe
    video = pipe(
        prompt="a paper boat", width=32, height=32, num_frames=13, num_inference_steps=1, output_type="np"
    ).frames
    assert np.asarray(video).shape[1] == 16
    with pytest.raises(ModelError, match="8k\\+1"):
        next(generate(small_request(model_id=model.spec.id, num_frames=13), model=model))


def gradient(width: int, height: int, phase: int = 0) -> np.ndarray:
    """A smooth RGB image (`phase` shifts its colours): something to animate."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([(x * 3 + phase) % 256, (y * 5 + phase) % 256, (x + y + 2 * phase) % 256], -1).astype(
        np.uint8
    )


@pytest.mark.parametrize(
    ("family", "pipeline_class", "frames_made", "generation_size"),
    # 1.25 s at 8 fps (10 frames) on each family's rule; 72x40 rounded up to its latent grid.
    [
        ("wan-i2v", "WanImageToVideoPipeline", 13, (80, 48)),  # Wan 2.1: CLIP image features too
        ("wan2.2-i2v", "WanImageToVideoPipeline", 13, (80, 48)),  # Wan 2.2: two experts, no image encoder
        ("ltx-i2v", "LTXImageToVideoPipeline", 17, (96, 64)),
        ("cogvideox-i2v", "CogVideoXImageToVideoPipeline", 17, (80, 48)),
    ],
)
def test_an_image_to_video_checkpoint_animates_the_image_by_its_rules(
    loaded: dict[str, LoadedModel],
    family: str,
    pipeline_class: str,
    frames_made: int,
    generation_size: tuple[int, int],
) -> None:
    model = loaded[family]
    assert model.pipe.__class__.__name__ == model.spec.pipeline_class == pipeline_class
    assert model.spec.modes == (IMAGE, EXTEND)
    assert model.spec.generation_size(72, 40) == generation_size
    num_frames = model.spec.num_frames_for(1.25, 8)
    assert num_frames == frames_made
    image = gradient(144, 96)  # another size and aspect ratio than the output: fitted first
    steps: list[object] = []
    request = small_request(model_id=model.spec.id, num_frames=num_frames, width=72, height=40, image=image)
    frames = np.stack(list(generate(request, steps.append, model=model)))
    assert frames.shape == (frames_made, 40, 72, 3)
    assert np.array_equal(frames[0], fit_frame(image, 72, 40))  # the video starts with the image
    assert len(steps) == request.num_inference_steps + 1
    # The pipeline saw the image: another image, same seed, changes the frames that follow it.
    other = np.stack(list(generate(replace(request, image=gradient(144, 96, phase=90)), model=model)))
    assert not np.array_equal(frames[1:], other[1:])
    # Text alone is not a mode of these pipelines.
    with pytest.raises(ModelError, match="cannot run text to video"):
        next(generate(replace(request, image=None), model=model))


def test_cogvideox_5b_i2v_runs_at_its_one_size_and_crops_smaller_requests(
    loaded: dict[str, LoadedModel],
) -> None:
    # Its learned positional embeddings are for one size (64x48 in the tiny one, 720x480 in the real one).
    model = loaded["cogvideox-5b-i2v"]
    spec = model.spec
    assert spec.fixed_size == (64, 48) == (spec.max_width, spec.max_height)
    assert (spec.default_width, spec.default_height) == (64, 48)
    assert spec.generation_size(32, 32) == (64, 48)
    image = gradient(96, 64)
    request = small_request(model_id=spec.id, num_frames=9, width=48, height=32, image=image)
    frames = np.stack(list(generate(request, model=model)))
    assert frames.shape == (9, 32, 48, 3) and np.array_equal(frames[0], fit_frame(image, 48, 32))
    with pytest.raises(ModelError, match="up to 64x48"):
        next(generate(replace(request, width=80), model=model))
    # The pipeline itself refuses any other size: why the spec pins it.
    pipe: Any = model.pipe
    with pytest.raises(ValueError, match="different resolution"):
        pipe(image=Image.new("RGB", (80, 48)), prompt="a boat", width=80, height=48, num_frames=9)


@pytest.mark.parametrize("family", ["wan-i2v", "ltx-i2v", "cogvideox-i2v"])
def test_an_image_to_video_checkpoint_extends_and_chains_from_the_last_frame(
    loaded: dict[str, LoadedModel], family: str
) -> None:
    # One pass limited to 2 frame steps + 1: 17 new frames take several passes, each from the last frame.
    model = loaded[family]
    step = model.spec.frame_step
    chained = short_passes(model, frames=2 * step + 1)
    context = np.stack([gradient(64, 64, phase) for phase in range(3)])
    steps: list[object] = []
    request = small_request(model_id=model.spec.id, num_frames=17, context=context)
    frames = list(generate(request, steps.append, model=chained))
    assert len(frames) == 17 and {frame.shape for frame in frames} == {(64, 64, 3)}
    # Each pass makes 2 * step new frames after the frame it continues from.
    passes = -(-17 // (2 * step))
    assert len(steps) == passes * request.num_inference_steps + 1


def test_a_frame_count_off_the_family_rule_is_refused(loaded: dict[str, LoadedModel]) -> None:
    model = loaded["mochi"]
    with pytest.raises(ModelError, match="6k\\+1"):
        list(generate(small_request(model_id=model.spec.id, num_frames=9), model=model))


def test_a_mode_the_family_cannot_run_is_refused(loaded: dict[str, LoadedModel]) -> None:
    model = loaded["modelscope"]
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    with pytest.raises(ModelError, match="cannot run image to video"):
        list(generate(small_request(model_id=model.spec.id, num_frames=5, image=image), model=model))
