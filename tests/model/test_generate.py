"""generate(): frame count and size, determinism, progress, cancelation, and the streamed Wan decode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model import generate as generate_module
from model.config import GenerationCanceled, ModelError, Phase, StepInfo
from model.generate import decode_wan_streaming, generate, get_model, video_to_uint8
from model.pipeline import TINY_WAN_DIRNAME, LoadedModel
from tests.model.conftest import small_request


def test_yields_exactly_num_frames_of_the_requested_size(tiny_model: LoadedModel) -> None:
    # 200x120 runs at 208x128 (the 16 px grid) and is center-cropped back.
    frames = list(generate(small_request(width=200, height=120, num_frames=13), model=tiny_model))
    assert len(frames) == 13
    for frame in frames:
        assert frame.shape == (120, 200, 3)
        assert frame.dtype == np.uint8
        assert frame.flags.c_contiguous


def test_same_seed_same_frames_other_seed_other_frames(tiny_model: LoadedModel) -> None:
    first = np.stack(list(generate(small_request(seed=1), model=tiny_model)))
    again = np.stack(list(generate(small_request(seed=1), model=tiny_model)))
    other = np.stack(list(generate(small_request(seed=2), model=tiny_model)))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_on_step_hears_every_denoising_step_then_every_decoded_chunk(tiny_model: LoadedModel) -> None:
    steps: list[StepInfo] = []
    frames = list(
        generate(small_request(num_inference_steps=3, num_frames=9), steps.append, model=tiny_model)
    )
    assert len(frames) == 9
    # 9 frames are 3 latent frames: decoded as chunks of 1, 4 and 4 frames.
    assert steps == [
        StepInfo(Phase.DENOISING, 1, 3),
        StepInfo(Phase.DENOISING, 2, 3),
        StepInfo(Phase.DENOISING, 3, 3),
        StepInfo(Phase.DECODING, 1, 3),
        StepInfo(Phase.DECODING, 2, 3),
        StepInfo(Phase.DECODING, 3, 3),
    ]


def test_should_stop_during_denoising_cancels_before_any_frame(tiny_model: LoadedModel) -> None:
    steps: list[StepInfo] = []
    frames: list[np.ndarray] = []
    with pytest.raises(GenerationCanceled):
        for frame in generate(
            small_request(num_inference_steps=4), steps.append, lambda: len(steps) >= 2, model=tiny_model
        ):
            frames.append(frame)
    assert frames == []
    assert [s.phase for s in steps] == [Phase.DENOISING, Phase.DENOISING]


def test_should_stop_during_decoding_stops_the_frames(tiny_model: LoadedModel) -> None:
    steps: list[StepInfo] = []
    frames: list[np.ndarray] = []
    with pytest.raises(GenerationCanceled):
        for frame in generate(
            small_request(num_frames=9),
            steps.append,
            lambda: any(s.phase == Phase.DECODING for s in steps),
            model=tiny_model,
        ):
            frames.append(frame)
    assert len(frames) == 1  # the first chunk holds one frame; nothing after the stop
    assert steps[-1] == StepInfo(Phase.DECODING, 1, 3)


def test_should_stop_before_start_cancels_at_once(tiny_model: LoadedModel) -> None:
    steps: list[StepInfo] = []
    with pytest.raises(GenerationCanceled):
        next(generate(small_request(), steps.append, lambda: True, model=tiny_model))
    assert steps == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_frames": 10}, "4k\\+1"),
        ({"width": 4000}, "sizes up to"),
        ({"model_id": "/elsewhere"}, "loaded model is"),
    ],
)
def test_requests_the_model_cannot_serve_are_refused(
    tiny_model: LoadedModel, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        next(generate(small_request(**changes), model=tiny_model))


def test_streamed_decode_equals_whole_vae_decode(tiny_model: LoadedModel) -> None:
    vae = tiny_model.pipe.vae
    latents = torch.randn(1, 16, 5, 8, 8, generator=torch.Generator().manual_seed(3))
    chunks = list(decode_wan_streaming(vae, latents))
    assert [c.shape[2] for c in chunks] == [1, 4, 4, 4, 4]
    streamed = torch.cat(chunks, dim=2)
    # De-normalise exactly as WanPipeline.__call__ does before it calls vae.decode.
    mean = torch.tensor(vae.config.latents_mean).view(1, 16, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, 16, 1, 1, 1)
    with torch.inference_mode():
        whole = vae.decode(latents / inv_std + mean).sample
    # The same convolutions on the same inputs in the same order: equal up to float noise (1e-6).
    torch.testing.assert_close(streamed, whole, atol=1e-6, rtol=0)
    assert (video_to_uint8(streamed).int() - video_to_uint8(whole).int()).abs().max() <= 1


def test_frames_match_the_pipelines_own_decode(tiny_model: LoadedModel) -> None:
    request = small_request(width=80, height=48, num_frames=9, num_inference_steps=3)
    with torch.inference_mode():
        video = tiny_model.pipe(  # type: ignore[operator]
            prompt=request.prompt,
            width=request.width,
            height=request.height,
            num_frames=request.num_frames,
            num_inference_steps=request.num_inference_steps,
            guidance_scale=request.guidance_scale,
            generator=torch.Generator("cpu").manual_seed(request.seed),
            output_type="np",
        ).frames[0]
    expected = (video * 255).round().astype(np.uint8)
    frames = np.stack(list(generate(request, model=tiny_model)))
    assert frames.shape == expected.shape == (9, 48, 80, 3)
    # uint8 tolerance of 1: float rounding at the .5 boundary is the only allowed difference.
    assert np.abs(frames.astype(int) - expected.astype(int)).max() <= 1


def test_loads_and_caches_the_model_from_the_cache_dir_env(
    tiny_model: LoadedModel, tiny_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (tiny_cache_dir / TINY_WAN_DIRNAME / "model_index.json").is_file()
    monkeypatch.setenv("KINEMA_MODEL_CACHE_DIR", str(tiny_cache_dir))
    monkeypatch.setattr(generate_module, "_loaded", {})
    frames = list(generate(small_request(num_frames=5)))
    assert len(frames) == 5
    assert get_model("builtin:tiny-wan") is get_model("builtin:tiny-wan")


def test_closing_early_releases_the_decoder_cache(tiny_model: LoadedModel) -> None:
    frames = generate(small_request(num_frames=9), model=tiny_model)
    next(frames)
    frames.close()
    vae = tiny_model.pipe.vae
    assert all(entry is None for entry in vae._feat_map)
