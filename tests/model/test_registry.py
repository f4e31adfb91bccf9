"""The model registry: frame-count and size rules, and specs for local pipeline directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.registry import BUILTIN_TINY_WAN, TINY_WAN, UnknownModelError, get_spec


@pytest.mark.parametrize(
    ("duration_s", "fps", "expected"),
    [(4, 16, 65), (2, 8, 17), (5, 16, 81), (1, 8, 9), (0.1, 8, 1), (2.1, 8, 17), (2.2, 8, 21)],
)
def test_num_frames_for_covers_the_duration_with_4k_plus_1_frames(
    duration_s: float, fps: int, expected: int
) -> None:
    assert TINY_WAN.num_frames_for(duration_s, fps) == expected


@pytest.mark.parametrize(
    ("size", "expected"),
    [((256, 256), (256, 256)), ((200, 120), (208, 128)), ((832, 480), (832, 480)), ((1, 17), (16, 32))],
)
def test_generation_size_rounds_up_to_the_latent_grid(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert TINY_WAN.generation_size(*size) == expected


def test_builtin_spec() -> None:
    spec = get_spec(BUILTIN_TINY_WAN)
    assert (spec.family, spec.pipeline_class, spec.default_fps) == ("wan", "WanPipeline", 8)


def test_spec_for_a_saved_tiny_wan_directory(tiny_model: object, tiny_cache_dir: Path) -> None:
    path = tiny_cache_dir / "tiny-wan-v1"
    spec = get_spec(str(path))
    assert spec.family == "wan"
    assert spec.pipeline_class == "WanPipeline"
    assert spec.path == str(path.resolve())
    assert spec.frame_step == 4 and spec.spatial_multiple == 16


def test_a_directory_without_a_pipeline_is_unknown(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(UnknownModelError, match="not a built-in model"):
        get_spec(str(tmp_path))


def test_an_unsupported_pipeline_class_is_unknown(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(UnknownModelError, match="supported pipelines"):
        get_spec(str(tmp_path))


def test_requests_may_be_60_s_long_beyond_one_pass() -> None:
    assert (TINY_WAN.max_frames_per_pass, TINY_WAN.max_frames_total) == (161, 481)
    assert TINY_WAN.max_total_duration_s(8) == 60
    assert TINY_WAN.modes == ("text", "image", "extend", "edit")


@pytest.mark.parametrize(
    ("pipeline_class", "modes", "max_frames_total"),
    [
        ("WanPipeline", ("text", "image", "extend", "edit"), 961),
        ("WanImageToVideoPipeline", ("image", "extend"), 961),
        ("LTXPipeline", ("text",), 257),
        ("LTXImageToVideoPipeline", ("image", "extend"), 1441),
        ("CogVideoXPipeline", ("text",), 49),
        ("CogVideoXImageToVideoPipeline", ("image", "extend"), 481),
        ("CogVideoXVideoToVideoPipeline", ("edit",), 49),
        ("WanVACEPipeline", ("text", "image", "extend"), 961),
        ("LTXConditionPipeline", ("text", "image", "extend"), 1441),
    ],
)
def test_each_pipeline_class_names_its_modes_and_longest_request(
    tmp_path: Path, pipeline_class: str, modes: tuple[str, ...], max_frames_total: int
) -> None:
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": pipeline_class}))
    spec = get_spec(str(tmp_path))
    assert (spec.modes, spec.max_frames_total) == (modes, max_frames_total)
    # 60 s at the family's default rate, or one pass where the pipeline cannot continue a video.
    assert spec.max_total_duration_s(spec.default_fps) in (60, spec.max_duration_s(spec.default_fps))
