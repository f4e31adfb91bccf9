"""Each speed switch of `InferenceOptions`, on the CPU with the tiny Wan: on matches off within a tolerance.

Tolerances are on the uint8 frames a user gets, as the largest and mean absolute difference and as PSNR.
Switches that keep the arithmetic (guidance batching, attention kernels, compilation) must agree to float
rounding: at most 1 grey level anywhere. Switches that approximate (bfloat16, the step cache, VAE tiling)
have a stated error budget; figures measured here are in the comments.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers.models.attention_dispatch import _AttentionBackendRegistry

from model.config import GenerationCanceled, GenerationRequest, InferenceOptions, ModelError, StepInfo
from model.export import ExportError, probe_mp4, render_mp4, resolve_video_encoder
from model.generate import generate
from model.pipeline import LoadedModel, load_pipeline
from model.registry import BUILTIN_TINY_WAN
from tests.model.conftest import short_passes, small_request


def load(cache_dir: Path, **options: Any) -> LoadedModel:
    """A fresh tiny Wan with these switches (switches change the model, so never the shared one)."""
    return load_pipeline(
        BUILTIN_TINY_WAN, cache_dir=cache_dir, device="cpu", options=InferenceOptions(**options)
    )


def frames_of(model: LoadedModel, request: GenerationRequest) -> np.ndarray:
    """All frames of one generation as an int array (t, H, W, 3)."""
    return np.stack(list(generate(request, model=model))).astype(np.int64)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of b against a (uint8 range); inf when equal."""
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.fixture(scope="module")
def plain(tiny_model: LoadedModel) -> LoadedModel:
    """The shared tiny Wan with the default options: plain diffusers, the reference for every switch."""
    assert tiny_model.options == InferenceOptions()
    return tiny_model


@contextmanager
def transformer_calls(model: LoadedModel) -> Iterator[list[int]]:
    """Count the transformer's forward calls inside the block: the list's one item is the count."""
    count = [0]

    def hook(*_: object) -> None:
        count[0] += 1

    handle = model.pipe.transformer.register_forward_pre_hook(hook)
    try:
        yield count
    finally:
        handle.remove()


def test_defaults_are_plain_diffusers_in_float32_on_the_cpu(plain: LoadedModel) -> None:
    assert plain.dtype == torch.float32
    assert plain.pipe.transformer.dtype == torch.float32
    assert plain.step_cache_stats is None
    assert not plain.pipe.vae.use_tiling
    assert plain.pipe.transformer.is_cache_enabled is False


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dtype": "int8"}, "dtype must be one of"),
        ({"compile": "full"}, "compile must be one of"),
        ({"step_cache": "teacache"}, "step_cache must be"),
        ({"step_cache_threshold": -0.1}, "step_cache_threshold must be"),
        ({"video_encoder": "hevc"}, "video_encoder must be one of"),
    ],
)
def test_unknown_switch_values_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        InferenceOptions(**options)


def test_cfg_batch_runs_one_transformer_pass_per_step_with_the_same_frames(
    plain: LoadedModel, tiny_cache_dir: Path
) -> None:
    request = small_request(num_inference_steps=4, negative_prompt="blurry")
    batched = load(tiny_cache_dir, cfg_batch=True)
    with transformer_calls(plain) as plain_calls:
        reference = frames_of(plain, request)
    with transformer_calls(batched) as batched_calls:
        frames = frames_of(batched, request)
    assert plain_calls == [8]  # diffusers: prompt and negative prompt, one call each per step
    assert batched_calls == [4]  # one batch of 2 per step
    # A batch of 2 reorders float sums: measured max 1 grey level, mean 5e-5.
    assert np.abs(frames - reference).max() <= 1
    assert np.abs(frames - reference).mean() < 1e-3


def test_cfg_batch_without_guidance_is_the_plain_path(plain: LoadedModel, tiny_cache_dir: Path) -> None:
    request = small_request(guidance_scale=1.0)
    assert np.array_equal(frames_of(load(tiny_cache_dir, cfg_batch=True), request), frames_of(plain, request))


def test_bf16_keeps_the_vae_in_float32_and_stays_close(plain: LoadedModel, tiny_cache_dir: Path) -> None:
    model = load(tiny_cache_dir, dtype="bf16")
    assert model.pipe.transformer.dtype == torch.bfloat16
    assert model.pipe.text_encoder.dtype == torch.bfloat16
    assert model.pipe.vae.dtype == torch.float32
    request = small_request(num_inference_steps=4)
    # bfloat16 keeps 8 bits of mantissa: measured 43 dB, mean 0.9 grey levels.
    assert psnr(frames_of(plain, request), frames_of(model, request)) >= 35


@pytest.mark.parametrize("backend", ["native", "_native_math"])
def test_attention_backends_that_run_on_the_cpu_give_the_same_frames(
    plain: LoadedModel, tiny_cache_dir: Path, backend: str
) -> None:
    active_before = _AttentionBackendRegistry._active_backend
    model = load(tiny_cache_dir, attention_backend=backend)
    assert _AttentionBackendRegistry._active_backend == active_before, "must not change the process default"
    processors = {block.attn1.processor._attention_backend for block in model.pipe.transformer.blocks}
    assert {str(p.value) for p in processors} == {backend}
    request = small_request(num_inference_steps=3)
    frames, reference = frames_of(model, request), frames_of(plain, request)
    assert np.abs(frames - reference).max() <= 1  # measured: 0 (native), 1 (math kernel)


@pytest.mark.parametrize(
    ("backend", "reason"),
    [
        ("_native_cudnn", "does not run on cpu"),
        ("flash", "flash-attn"),
        ("no_such_kernel", "unknown attention backend"),
    ],
)
def test_an_attention_backend_that_cannot_run_here_is_refused_at_load(
    tiny_cache_dir: Path, backend: str, reason: str
) -> None:
    with pytest.raises(ModelError, match=reason):
        load(tiny_cache_dir, attention_backend=backend)


@pytest.mark.skipif(
    shutil.which("gcc") is None and shutil.which("cc") is None, reason="inductor needs a C compiler"
)
def test_regional_compile_compiles_each_block_and_gives_the_same_frames(
    plain: LoadedModel, tiny_cache_dir: Path
) -> None:
    model = load(tiny_cache_dir, compile="regional")
    assert all(block._compiled_call_impl is not None for block in model.pipe.transformer.blocks)
    request = small_request(num_inference_steps=2)
    # Inductor fuses and reorders float ops: measured max 1 grey level, mean 1e-4.
    assert np.abs(frames_of(model, request) - frames_of(plain, request)).max() <= 1


def test_step_cache_skips_passes_within_its_error_budget(plain: LoadedModel, tiny_cache_dir: Path) -> None:
    request = small_request(num_inference_steps=20)
    model = load(tiny_cache_dir, step_cache="first_block", step_cache_threshold=0.05)
    reference = frames_of(plain, request)
    frames = frames_of(model, request)
    stats = model.step_cache_stats
    assert stats is not None
    skipped = stats.skipped
    assert stats.passes == 40  # 20 steps x (prompt, negative prompt)
    assert skipped >= 4  # measured: 8 of 40
    # Budget: 40 dB and half a grey level on average; measured 64 dB, max 1, mean 0.02.
    assert psnr(reference, frames) >= 40
    assert np.abs(frames - reference).mean() <= 0.5
    # Counts are per generation, and a new generation does not start from the last one's cache.
    assert np.array_equal(frames_of(model, request), frames)
    assert (stats.passes, stats.skipped) == (40, skipped)


def test_a_canceled_generation_leaves_nothing_in_the_step_cache(tiny_cache_dir: Path) -> None:
    # Threshold 1: almost every pass after the first is served from the cache, so a residual left by
    # the canceled generation would be reused by the next one's first step.
    request = small_request(num_inference_steps=6)
    fresh = frames_of(load(tiny_cache_dir, step_cache="first_block", step_cache_threshold=1.0), request)
    model = load(tiny_cache_dir, step_cache="first_block", step_cache_threshold=1.0)
    steps: list[StepInfo] = []
    with pytest.raises(GenerationCanceled):
        list(
            generate(
                small_request(prompt="fire", seed=99), steps.append, lambda: len(steps) >= 3, model=model
            )
        )
    assert np.array_equal(frames_of(model, request), fresh)
    assert model.step_cache_stats is not None and model.step_cache_stats.passes == 12


def test_step_cache_with_threshold_zero_never_skips_and_changes_nothing(
    plain: LoadedModel, tiny_cache_dir: Path
) -> None:
    request = small_request(num_inference_steps=6)
    model = load(tiny_cache_dir, step_cache="first_block", step_cache_threshold=0.0, cfg_batch=True)
    assert np.array_equal(frames_of(model, request), frames_of(load(tiny_cache_dir, cfg_batch=True), request))
    assert model.step_cache_stats is not None
    assert (model.step_cache_stats.passes, model.step_cache_stats.skipped) == (6, 0)


def test_vae_tiling_decodes_in_tiles_close_to_the_whole_frame(
    plain: LoadedModel, tiny_cache_dir: Path
) -> None:
    model = load(tiny_cache_dir, vae_tiling=True)
    vae = model.pipe.vae
    assert vae.use_tiling
    # 288 px is larger than the default 256 px tile: 2x2 overlapping tiles, blended.
    request = small_request(width=288, height=288, num_frames=5, num_inference_steps=1)
    assert request.width > vae.tile_sample_min_width
    frames, reference = frames_of(model, request), frames_of(plain, request)
    assert frames.shape == reference.shape == (5, 288, 288, 3)
    # Tiles see only part of the frame (the decoder's attention is global): approximate by design.
    # Measured on the random tiny VAE: 36.6 dB, mean 1.8 grey levels.
    assert psnr(reference, frames) >= 30
    assert np.abs(frames - reference).mean() <= 4


def test_auto_video_encoder_falls_back_to_libx264_without_nvenc(tmp_path: Path) -> None:
    if resolve_video_encoder("auto") == "h264_nvenc":
        pytest.skip("NVENC opens on this machine; the fallback is for machines without it")
    frames = [np.full((64, 96, 3), 40 * i, dtype=np.uint8) for i in range(5)]
    info = render_mp4(iter(frames), tmp_path / "out.mp4", fps=8, encoder="auto")
    assert probe_mp4(tmp_path / "out.mp4").frames == info.frames == 5
    # libx264 signs its stream with an SEI message naming itself.
    assert re.search(rb"x264 - core \d+", (tmp_path / "out.mp4").read_bytes())
    with pytest.raises(ExportError, match="h264_nvenc cannot encode on this machine"):
        render_mp4(iter(frames), tmp_path / "nvenc.mp4", fps=8, encoder="h264_nvenc")
    assert not (tmp_path / "nvenc.mp4").exists()


def test_an_unknown_video_encoder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="video encoder must be one of"):
        render_mp4(iter([np.zeros((8, 8, 3), np.uint8)]), tmp_path / "x.mp4", fps=8, encoder="hevc")


def test_switches_combine(plain: LoadedModel, tiny_cache_dir: Path) -> None:
    options = {"cfg_batch": True, "attention_backend": "native", "vae_tiling": True}
    model = load(tiny_cache_dir, **options)
    assert model.options == replace(InferenceOptions(), **options)
    request = small_request(num_inference_steps=2)
    assert np.abs(frames_of(model, request) - frames_of(plain, request)).max() <= 1


def conditioned_requests() -> list[GenerationRequest]:
    """An image to video, an extension and an edit, each in two segments of at most 17 frames, 2 steps."""
    y, x = np.mgrid[0:64, 0:64]
    image = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1).astype(np.uint8)
    clip = np.stack([np.roll(image, 3 * i, axis=1) for i in range(9)])
    return [
        small_request(image=image, num_frames=21),
        small_request(context=clip, num_frames=13),
        small_request(source=np.concatenate([clip, clip, clip]), num_frames=21, strength=1.0),
    ]


def test_cfg_batch_works_for_conditioned_and_chained_runs(plain: LoadedModel, tiny_cache_dir: Path) -> None:
    batched = short_passes(load(tiny_cache_dir, cfg_batch=True))
    for request in conditioned_requests():
        with transformer_calls(plain) as plain_calls:
            reference = frames_of(short_passes(plain), request)
        with transformer_calls(batched) as batched_calls:
            frames = frames_of(batched, request)
        assert batched_calls[0] * 2 == plain_calls[0] == 2 * 2 * 2  # 2 segments x 2 steps, 2 branches
        assert np.abs(frames - reference).max() <= 1


def test_step_cache_works_for_conditioned_and_chained_runs(plain: LoadedModel, tiny_cache_dir: Path) -> None:
    exact = short_passes(load(tiny_cache_dir, step_cache="first_block", step_cache_threshold=0.0))
    # Threshold 1: nearly every pass after a segment's first is served from the cache; the last segment
    # is shorter, so a residual kept from the segment before would not even have its shape.
    loose = short_passes(load(tiny_cache_dir, step_cache="first_block", step_cache_threshold=1.0))
    for request in conditioned_requests():
        assert np.array_equal(frames_of(exact, request), frames_of(short_passes(plain), request))
        assert len(frames_of(loose, request)) == request.num_frames
        stats = loose.step_cache_stats
        assert stats is not None and stats.passes == 8 and stats.skipped >= 2


def test_vae_tiling_works_for_conditioned_runs(tiny_cache_dir: Path) -> None:
    model = short_passes(load(tiny_cache_dir, vae_tiling=True))
    for request in conditioned_requests():
        frames = frames_of(model, request)
        assert frames.shape == (request.num_frames, 64, 64, 3)
        if request.image is not None:
            assert np.array_equal(frames[0], request.image)
