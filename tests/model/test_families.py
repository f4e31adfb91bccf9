"""The model zoo: tiny checkpoints of other families, saved to disk, loaded through the registry and run.

Each family's frame rule and size rule come from its registry row; a real (tiny, random-weight) pipeline
of that class is saved like a downloaded checkpoint, loaded by the same code as a production model, and
generates frames that follow the rules.
"""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from model.conditioning import fit_frame, pad_frame
from model.config import ModelError
from model.generate import generate
from model.pipeline import LoadedModel, load_pipeline
from model.registry import (
    EDIT,
    EXTEND,
    IMAGE,
    IMAGE_TO_VIDEO_PIPELINES,
    TEXT,
    VIDEO_TO_VIDEO_PIPELINES,
    UnknownModelError,
    get_spec,
)
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
    ("pipeline_class", "family", "frame_step", "multiple", "fps", "steps", "guidance", "modes"),
    [
        # One pass of text to video: these pipelines take no frames to condition on.
        ("HunyuanVideoPipeline", "hunyuanvideo", 4, 16, 15, 50, 6.0, (TEXT,)),
        ("MochiPipeline", "mochi", 6, 16, 30, 64, 4.5, (TEXT,)),
        ("TextToVideoSDPipeline", "modelscope", 1, 8, 8, 50, 9.0, (TEXT,)),
        # Known frames (VACE's masked video, LTX's conditions): images, extensions, chained to 60 s.
        ("WanVACEPipeline", "wan-vace", 4, 16, 16, 50, 5.0, (TEXT, IMAGE, EXTEND)),
        ("LTXConditionPipeline", "ltx-condition", 8, 32, 24, 50, 3.0, (TEXT, IMAGE, EXTEND)),
        # A source re-noised: edits of one pass.
        ("CogVideoXVideoToVideoPipeline", "cogvideox", 8, 16, 8, 50, 6.0, (EDIT,)),
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
    modes: tuple[str, ...],
) -> None:
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": pipeline_class}))
    spec = get_spec("served-name", str(tmp_path))
    assert spec.id == "served-name"
    assert spec.path == str(tmp_path.resolve())
    assert (spec.family, spec.frame_step, spec.spatial_multiple) == (family, frame_step, multiple)
    assert (spec.default_fps, spec.default_steps, spec.default_guidance) == (fps, steps, guidance)
    assert spec.modes == modes
    if EXTEND in modes:
        assert spec.max_total_duration_s(spec.default_fps) == 60
    else:
        assert spec.max_frames_total == spec.max_frames_per_pass


# The VAE config keys `WanPipeline` reads its compression from (Wan 2.2 TI2V-5B: 4x time, 16x space).
WAN21_VAE = {
    "_class_name": "AutoencoderKLWan",
    "z_dim": 16,
    "scale_factor_spatial": 8,
    "scale_factor_temporal": 4,
}
WAN22_TI2V_VAE = {
    "_class_name": "AutoencoderKLWan",
    "z_dim": 48,
    "is_residual": True,
    "in_channels": 12,
    "out_channels": 12,
    "patch_size": 2,
    "scale_factor_spatial": 16,
    "scale_factor_temporal": 4,
    "temperal_downsample": [False, True, True],
}


def wan_directory(path: Path, pipeline_class: str, vae: dict[str, object] | None) -> Path:
    """A Wan pipeline directory with the configs the registry reads, no weights (`vae=None`: no VAE)."""
    (path / "transformer").mkdir(parents=True)
    (path / "model_index.json").write_text(json.dumps({"_class_name": pipeline_class}))
    transformer = {"_class_name": "WanTransformer3DModel", "patch_size": [1, 2, 2]}
    (path / "transformer" / "config.json").write_text(json.dumps(transformer))
    if vae is not None:
        (path / "vae").mkdir()
        (path / "vae" / "config.json").write_text(json.dumps(vae))
    return path


@pytest.mark.parametrize(
    ("pipeline_class", "vae", "multiple", "generation_size"),
    # 72x40 is off both grids: the pipeline runs at the size rounded up to the model's and crops back.
    [
        ("WanPipeline", WAN22_TI2V_VAE, 32, (96, 64)),  # Wan 2.2 TI2V-5B: VAE 16x, patch 2
        ("WanPipeline", WAN21_VAE, 16, (80, 48)),  # Wan 2.1 (and 2.2 A14B): VAE 8x, patch 2
        ("WanImageToVideoPipeline", WAN21_VAE, 16, (80, 48)),
        ("WanVACEPipeline", WAN21_VAE, 16, (80, 48)),
        # A VAE config saved before diffusers wrote scale factors: AutoencoderKLWan's defaults (8x, 4x).
        ("WanPipeline", {"_class_name": "AutoencoderKLWan", "z_dim": 16}, 16, (80, 48)),
        ("WanPipeline", None, 16, (80, 48)),
    ],
)
def test_a_wan_directory_gets_the_size_grid_of_its_vae_and_patch(
    tmp_path: Path,
    pipeline_class: str,
    vae: dict[str, object] | None,
    multiple: int,
    generation_size: tuple[int, int],
) -> None:
    spec = get_spec("served-name", str(wan_directory(tmp_path / "wan", pipeline_class, vae)))
    assert (spec.spatial_multiple, spec.frame_step) == (multiple, 4)
    assert spec.generation_size(72, 40) == generation_size
    assert spec.generation_size(1, 1) == (multiple, multiple)
    # Sizes on the grid run as asked: the family's default and Wan 2.2 TI2V-5B's own 1280x704.
    assert spec.generation_size(832, 480) == (832, 480)
    assert spec.generation_size(1280, 704) == (1280, 704)


def test_a_wan_vae_with_another_temporal_scale_sets_the_frame_rule(tmp_path: Path) -> None:
    vae = {**WAN21_VAE, "scale_factor_temporal": 8}
    spec = get_spec("wan-8x", str(wan_directory(tmp_path / "wan", "WanPipeline", vae)))
    assert spec.frame_step == 8
    assert spec.num_frames_for(1.25, 8) == 17  # 10 frames asked: the next 8k+1
    # The limits stay counts the model makes: one pass of 81 frames (8 x 10 + 1), chained to 60 s.
    assert spec.max_frames_per_pass == 81
    assert spec.max_frames_total == 961 and spec.max_total_duration_s(16) == 60


def test_wan22_ti2v_makes_text_and_image_videos_on_its_32_px_grid(loaded: dict[str, LoadedModel]) -> None:
    # A size off the 32 px grid (16 px would be 80x48, which this VAE and patch cannot make): the frames
    # are made at 96x64 and cropped back, through the latent path (48 patchified channels) in each mode.
    model = loaded["wan2.2-ti2v"]
    assert model.spec.spatial_multiple == 32 and model.spec.generation_size(72, 40) == (96, 64)
    assert model.spec.modes == (TEXT, IMAGE, EXTEND, EDIT)
    pipe: Any = model.pipe
    assert pipe.vae_scale_factor_spatial == 16
    image = gradient(144, 96)
    request = small_request(model_id=model.spec.id, num_frames=13, width=72, height=40, image=image)
    frames = np.stack(list(generate(request, model=model)))
    assert frames.shape == (13, 40, 72, 3)
    assert np.array_equal(frames[0], fit_frame(image, 72, 40))
    other = np.stack(list(generate(replace(request, image=gradient(144, 96, phase=90)), model=model)))
    assert not np.array_equal(frames[1:], other[1:])
    # Chained past one pass (9 frames here), each pass continuing the last latent frames.
    chained = np.stack(list(generate(replace(request, image=None), model=short_passes(model, frames=9))))
    assert chained.shape == (13, 40, 72, 3) and chained[-1].std() > 0


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
    for num_frames in (spec.frame_step + 1, 2 * spec.frame_step + 1):
        extra: dict[str, Any] = {"num_frames": num_frames}
        if spec.pipeline_class in IMAGE_TO_VIDEO_PIPELINES:
            extra["image"] = Image.new("RGB", (width, height))
        if spec.pipeline_class in VIDEO_TO_VIDEO_PIPELINES:
            # As many frames as its source: no `num_frames` argument.
            extra = {"video": [Image.new("RGB", (width, height))] * num_frames, "strength": 1.0}
        video = pipe(
            prompt="a paper boat",
            width=width,
            height=height,
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
    # Its learned positional embeddings are for one size (80x64 in the tiny one, 720x480 in the real one).
    model = loaded["cogvideox-5b-i2v"]
    spec = model.spec
    assert spec.fixed_size == (80, 64) == (spec.max_width, spec.max_height)
    assert (spec.default_width, spec.default_height) == (80, 64)
    assert spec.generation_size(32, 32) == (80, 64)
    image = gradient(96, 64)
    request = small_request(model_id=spec.id, num_frames=9, width=48, height=32, image=image)
    frames = np.stack(list(generate(request, model=model)))
    assert frames.shape == (9, 32, 48, 3) and np.array_equal(frames[0], fit_frame(image, 48, 32))
    with pytest.raises(ModelError, match="up to 80x64"):
        next(generate(replace(request, width=96), model=model))
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


class PipelineCalls:
    """The keyword arguments of every call of a pipeline class, recorded around the real `__call__`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, pipe: Any) -> None:
        self.kwargs: list[dict[str, Any]] = []
        original = type(pipe).__call__

        @functools.wraps(original)  # keeps the signature `model.segments` reads the accepted arguments from
        def recording(pipeline: Any, *args: Any, **kwargs: Any) -> Any:
            self.kwargs.append(kwargs)
            return original(pipeline, *args, **kwargs)

        monkeypatch.setattr(type(pipe), "__call__", recording)


def pixels(images: list[Image.Image]) -> np.ndarray:
    """PIL frames as a (T, H, W, C) uint8 array."""
    return np.stack([np.asarray(image) for image in images])


@pytest.mark.parametrize(
    ("family", "frames_made", "generation_size"),
    # 1.25 s at 8 fps (10 frames) on each family's rule; 72x40 rounded up to its latent grid.
    [("wan-vace", 13, (80, 48)), ("ltx-condition", 17, (96, 64))],
)
def test_vace_and_ltx_condition_animate_an_image_given_as_their_first_frame(
    loaded: dict[str, LoadedModel],
    monkeypatch: pytest.MonkeyPatch,
    family: str,
    frames_made: int,
    generation_size: tuple[int, int],
) -> None:
    model = loaded[family]
    assert model.spec.modes == (TEXT, IMAGE, EXTEND)
    num_frames = model.spec.num_frames_for(1.25, 8)
    assert num_frames == frames_made
    calls = PipelineCalls(monkeypatch, model.pipe)
    image = gradient(144, 96)
    steps: list[object] = []
    request = small_request(model_id=model.spec.id, num_frames=num_frames, width=72, height=40, image=image)
    frames = np.stack(list(generate(request, steps.append, model=model)))
    assert frames.shape == (frames_made, 40, 72, 3)
    assert np.array_equal(frames[0], fit_frame(image, 72, 40))  # the video starts with the image
    assert len(steps) == request.num_inference_steps + 1
    # The image went in as the pipeline's first frame, at the generation size (fitted, then edge-padded).
    (kwargs,) = calls.kwargs
    width, height = generation_size
    first = pad_frame(fit_frame(image, 72, 40), width, height)
    assert (kwargs["width"], kwargs["height"], kwargs["num_frames"]) == (width, height, frames_made)
    if family == "wan-vace":
        # Upstream's first-frame recipe: the image, then gray; the mask keeps (0) the image only.
        video, mask = pixels(kwargs["video"]), pixels(kwargs["mask"])
        assert video.shape == (frames_made, height, width, 3) and mask.shape == (frames_made, height, width)
        assert np.array_equal(video[0], first) and (video[1:] == 128).all()
        assert (mask[0] == 0).all() and (mask[1:] == 255).all()
    else:
        (condition,) = kwargs["conditions"]
        assert (condition.frame_index, condition.strength, condition.video) == (0, 1.0, None)
        assert np.array_equal(np.asarray(condition.image), first)
    # The pipeline saw the image: another image, same seed, changes the frames that follow it.
    other = np.stack(list(generate(replace(request, image=gradient(144, 96, phase=90)), model=model)))
    assert not np.array_equal(frames[1:], other[1:])


@pytest.mark.parametrize(("family", "held_frames"), [("wan-vace", 5), ("ltx-condition", 9)])
def test_vace_and_ltx_condition_extend_and_chain_from_the_last_frames(
    loaded: dict[str, LoadedModel], monkeypatch: pytest.MonkeyPatch, family: str, held_frames: int
) -> None:
    # Each pass holds 2 latent frames of what it continues (Wan 4x time: 5 frames, LTX 8x: 9) and makes 2
    # more; one pass is limited to 4 latent frames, so 4 frame steps + 1 new frames take 3 passes.
    model = loaded[family]
    step = model.spec.frame_step
    chained = short_passes(model, frames=3 * step + 1)
    calls = PipelineCalls(monkeypatch, model.pipe)
    context = np.stack([gradient(64, 64, phase) for phase in range(0, 120, 10)])  # 12 frames of a parent
    steps: list[object] = []
    request = small_request(model_id=model.spec.id, num_frames=4 * step + 1, context=context)
    frames = np.stack(list(generate(request, steps.append, model=chained)))
    assert frames.shape == (4 * step + 1, 64, 64, 3) and frames[-1].std() > 0
    assert len(calls.kwargs) == 3 and len(steps) == 3 * request.num_inference_steps + 1
    # Each pass's leading frames are the ones it continues: the parent's last frames, then the last frames
    # of the pass before (64x64 is on both grids: what went in is what was yielded, uncropped).
    leads = [context[-held_frames:], frames[2 * step - held_frames : 2 * step]]
    leads.append(frames[4 * step - held_frames : 4 * step])
    # Passes of 2 held + 2 new latent frames, then 2 held + 1 for the last new frame.
    assert [kwargs["num_frames"] for kwargs in calls.kwargs] == [3 * step + 1, 3 * step + 1, 2 * step + 1]
    for kwargs, lead in zip(calls.kwargs, leads, strict=True):
        if family == "wan-vace":
            video, mask = pixels(kwargs["video"]), pixels(kwargs["mask"])
            assert np.array_equal(video[:held_frames], lead) and (video[held_frames:] == 128).all()
            assert (mask[:held_frames] == 0).all() and (mask[held_frames:] == 255).all()
        else:
            (condition,) = kwargs["conditions"]
            assert (condition.frame_index, condition.image) == (0, None)
            assert np.array_equal(pixels(condition.video), lead)
    # The new frames continue this parent: another one gives other frames.
    other = np.stack(list(generate(replace(request, context=255 - context), model=chained)))
    assert not np.array_equal(frames, other)
    # A long text request chains the same way: the first pass from text alone, the next two continuing.
    calls.kwargs.clear()
    text = np.stack(list(generate(replace(request, context=None, num_frames=4 * step + 1), model=chained)))
    assert text.shape == (4 * step + 1, 64, 64, 3) and len(calls.kwargs) == 2
    assert not ({"video", "conditions"} & calls.kwargs[0].keys())


def test_cogvideox_video_to_video_edits_a_source_at_its_size_and_length(
    loaded: dict[str, LoadedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = loaded["cogvideox-v2v"]
    spec = model.spec
    assert (spec.pipeline_class, spec.modes, spec.frame_step) == ("CogVideoXVideoToVideoPipeline", (EDIT,), 8)
    assert spec.max_frames_total == spec.max_frames_per_pass == 49  # one pass: edits do not chain
    calls = PipelineCalls(monkeypatch, model.pipe)
    # 10 source frames at 8 fps, another size and aspect ratio: the edit makes the next 8k+1 count (17)
    # at the source's size fitted to the request; the worker keeps the first 10.
    source = np.stack([gradient(144, 96, phase) for phase in range(0, 100, 10)])
    num_frames = spec.num_frames_for(len(source) / 8, 8)
    assert num_frames == 17
    steps: list[object] = []
    request = small_request(
        model_id=spec.id, num_frames=num_frames, width=72, height=40, source=source, strength=0.5,
        num_inference_steps=4,
    )  # fmt: skip
    frames = np.stack(list(generate(request, steps.append, model=model)))
    assert frames.shape == (17, 40, 72, 3) and frames[0].std() > 0
    assert len(steps) == 2 + 1  # strength 0.5 of 4 steps: the last 2 run, then the decode
    # The pipeline got the source fitted to the output and padded to its grid (80x48), its last frame
    # repeated up to 17 frames, and the strength.
    (kwargs,) = calls.kwargs
    assert "num_frames" not in kwargs and kwargs["strength"] == 0.5
    assert (kwargs["width"], kwargs["height"]) == (80, 48)
    fitted = np.stack([pad_frame(fit_frame(frame, 72, 40), 80, 48) for frame in source])
    video = pixels(kwargs["video"])
    assert np.array_equal(video[:10], fitted) and all(np.array_equal(f, fitted[-1]) for f in video[10:])
    # The source shapes the edit: another source, same seed and prompt, gives other frames.
    other = np.stack(list(generate(replace(request, source=255 - source), model=model)))
    assert not np.array_equal(frames, other)
    # A strength that runs no step gives the source back as it is (as Wan's SDEdit does).
    unchanged = np.stack(list(generate(replace(request, strength=0.1), model=model)))
    assert np.array_equal(unchanged[:10], np.stack([fit_frame(frame, 72, 40) for frame in source]))
    # Text alone is not a mode of this pipeline.
    with pytest.raises(ModelError, match="cannot run text to video"):
        next(generate(replace(request, source=None), model=model))


def test_wan22_a14b_text_to_video_runs_both_experts(loaded: dict[str, LoadedModel]) -> None:
    # Wan 2.2 A14B: `transformer` above `boundary_ratio * 1000` (875), `transformer_2` below it. With 4
    # steps (timesteps 1000, 910, 717, 24) each expert runs 2 steps, in the pipeline's loop (text) and in
    # Kinema's own (batched guidance, and every conditioned mode).
    model = loaded["wan2.2-t2v"]
    pipe: Any = model.pipe
    assert pipe.config.boundary_ratio == 0.875 and pipe.transformer_2 is not None
    assert model.spec.modes == (TEXT, IMAGE, EXTEND, EDIT) and model.spec.spatial_multiple == 16
    calls = {"transformer": 0, "transformer_2": 0}

    def counter(name: str) -> Any:
        def count(module: Any, args: Any, output: Any) -> None:
            calls[name] += 1

        return count

    hooks = [getattr(pipe, name).register_forward_hook(counter(name)) for name in calls]
    try:
        request = small_request(model_id=model.spec.id, num_frames=9, num_inference_steps=4)
        batched = replace(model, options=replace(model.options, cfg_batch=True))
        runs = [
            (request, model, 4),  # the pipeline's own loop: two passes a step (guidance unbatched)
            (request, batched, 2),  # Kinema's loop, both guidance branches in one pass
            (replace(request, image=gradient(64, 64)), model, 4),  # Kinema's loop, the image held
        ]
        for run, loaded_model, passes in runs:
            calls.update(transformer=0, transformer_2=0)
            frames = np.stack(list(generate(run, model=loaded_model)))
            assert frames.shape == (9, 64, 64, 3) and frames[-1].std() > 0
            assert calls == {"transformer": passes, "transformer_2": passes}
    finally:
        for hook in hooks:
            hook.remove()
