"""The model zoo: tiny checkpoints of other families, saved to disk, loaded through the registry and run.

Each family's frame rule and size rule come from its registry row; a real (tiny, random-weight) pipeline
of that class is saved like a downloaded checkpoint, loaded by the same code as a production model, and
generates frames that follow the rules.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.config import ModelError
from model.generate import generate
from model.pipeline import LoadedModel, load_pipeline
from model.registry import TEXT, UnknownModelError, get_spec
from tests.model.conftest import small_request
from tests.model.tiny_families import save_tiny


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("zoo")
    return {family: save_tiny(family, root / family) for family in ("hunyuanvideo", "mochi", "modelscope")}


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
    ("family", "seconds", "fps", "frames_made"),
    # HunyuanVideo makes 4k+1 frames: 1 s at 8 fps needs 9. Mochi makes 6k+1: 1 s at 6 fps needs 7.
    # ModelScope makes any count: 5 frames.
    [("hunyuanvideo", 1.0, 8, 9), ("mochi", 1.0, 6, 7), ("modelscope", 5 / 8, 8, 5)],
)
def test_a_saved_family_checkpoint_generates_frames_by_its_rules(
    loaded: dict[str, LoadedModel], family: str, seconds: float, fps: int, frames_made: int
) -> None:
    model = loaded[family]
    assert model.spec.id == f"tiny-{family}"
    assert model.pipe.__class__.__name__ == model.spec.pipeline_class
    num_frames = model.spec.num_frames_for(seconds, fps)
    assert num_frames == frames_made
    steps: list[object] = []
    # 72x40 is off the latent grid: the pipeline runs rounded up and each frame is cropped back.
    request = small_request(model_id=model.spec.id, num_frames=num_frames, fps=fps, width=72, height=40)
    frames = list(generate(request, steps.append, model=model))
    assert len(frames) == frames_made
    assert {frame.shape for frame in frames} == {(40, 72, 3)}
    assert frames[0].std() > 0  # random weights still draw something, not a blank frame
    assert len(steps) == request.num_inference_steps + 1  # every denoising step, then the decode


def test_a_frame_count_off_the_family_rule_is_refused(loaded: dict[str, LoadedModel]) -> None:
    model = loaded["mochi"]
    with pytest.raises(ModelError, match="6k\\+1"):
        list(generate(small_request(model_id=model.spec.id, num_frames=9), model=model))


def test_a_mode_the_family_cannot_run_is_refused(loaded: dict[str, LoadedModel]) -> None:
    model = loaded["modelscope"]
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    with pytest.raises(ModelError, match="cannot run image to video"):
        list(generate(small_request(model_id=model.spec.id, num_frames=5, image=image), model=model))
