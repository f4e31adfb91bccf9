"""Generation modes on the tiny Wan: image to video, extension, video to video, and chained long requests.

The tiny model's weights are random, so its frames are noise: the tests check what holds for any weights
(the first frame is the image, frame counts, which frames depend on what, determinism, memory, refusals).
"""

from __future__ import annotations

import json
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import WanImageToVideoPipeline
from torch.profiler import ProfilerActivity, profile, record_function

from model.conditioning import CONTEXT_LATENT_FRAMES, encode_wan, fit_frame
from model.config import GenerationCanceled, ModelError, Phase, StepInfo
from model.decode import decode_wan_chunks
from model.denoise import denoise_wan, encode_wan_text
from model.generate import generate
from model.pipeline import LoadedModel, load_pipeline
from model.registry import TINY_WAN, get_spec
from model.segments import plan_segments
from tests.model.conftest import short_passes, small_request


def frames_of(model: LoadedModel, **changes: Any) -> np.ndarray:
    """All frames of one generation of `small_request(**changes)`, stacked (t, H, W, 3) uint8."""
    return np.stack(list(generate(small_request(**changes), model=model)))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of b against a (uint8 range); inf when equal."""
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def smooth_image(width: int, height: int) -> np.ndarray:
    """A smooth RGB gradient: survives resizing and H.264 well, unlike noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=-1).astype(
        np.uint8
    )


# ------------------------------------------------------------------------------------------ fitting


def test_fit_frame_scales_to_cover_then_crops_the_center() -> None:
    wide = np.zeros((100, 200, 3), np.uint8)
    wide[:, :100] = (255, 0, 0)  # left half red, right half blue: a center crop keeps both halves
    wide[:, 100:] = (0, 0, 255)
    fitted = fit_frame(wide, 64, 64)
    assert fitted.shape == (64, 64, 3) and fitted.dtype == np.uint8
    # (Lanczos rings for a few pixels at the edge between them.)
    assert (fitted[:, :26] == (255, 0, 0)).all() and (fitted[:, 38:] == (0, 0, 255)).all()
    # Upscaling a portrait image to a landscape output: it covers the width and crops the height.
    assert fit_frame(smooth_image(30, 60), 96, 64).shape == (64, 96, 3)
    image = smooth_image(64, 48)
    assert np.array_equal(fit_frame(image, 64, 48), image)  # already the size: untouched


@pytest.mark.parametrize("bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32)])
def test_fit_frame_refuses_what_is_not_uint8_rgb(bad: np.ndarray) -> None:
    with pytest.raises(ModelError, match="a frame"):
        fit_frame(bad, 16, 16)


# ------------------------------------------------------------------------------------- image to video


def test_image_to_video_starts_with_the_image(tiny_model: LoadedModel) -> None:
    image = smooth_image(96, 80)  # another size and aspect ratio than the output: fitted first
    frames = frames_of(tiny_model, image=image)
    assert frames.shape == (9, 64, 64, 3)
    assert psnr(fit_frame(image, 64, 64), frames[0]) > 30
    # The image conditions the rest: not the same as text to video with the same seed, and deterministic.
    unconditioned = frames_of(tiny_model)
    assert np.abs(frames[1:].astype(int) - unconditioned[1:]).mean() > 5
    assert np.array_equal(frames_of(tiny_model, image=image), frames)
    other = frames_of(tiny_model, image=255 - image)
    assert not np.array_equal(other[1:], frames[1:])


def test_image_to_video_at_a_size_off_the_latent_grid(tiny_model: LoadedModel) -> None:
    # 72x40 runs at 80x48 and is cropped back; the image lines up with the cropped output.
    image = smooth_image(72, 40)
    frames = frames_of(tiny_model, image=image, width=72, height=40, num_frames=5)
    assert frames.shape == (5, 40, 72, 3)
    assert np.array_equal(frames[0], image)


# ------------------------------------------------------------------------------------------ extension


# The context frames a Wan extension holds: its 2 latent frames (4x time compression).
WAN_CONTEXT_FRAMES = 4 * (CONTEXT_LATENT_FRAMES - 1) + 1


def test_extension_yields_only_the_new_frames_after_the_context(tiny_model: LoadedModel) -> None:
    context = frames_of(tiny_model, seed=3)
    frames = frames_of(tiny_model, context=context, num_frames=9)
    assert frames.shape == (9, 64, 64, 3)
    # By hand: the context's last 5 frames are 2 latent frames held fixed; the decoded clip starts with
    # those 5 frames again, and only what follows them is yielded.
    pipe: Any = tiny_model.pipe
    request = small_request(context=context, num_frames=9)
    with torch.inference_mode():
        fixed = encode_wan(pipe.vae, context[-WAN_CONTEXT_FRAMES:])
        latents = denoise_wan(
            pipe,
            encode_wan_text(pipe, request.prompt, None, request.guidance_scale),
            width=64,
            height=64,
            num_frames=WAN_CONTEXT_FRAMES + 12,  # 2 held + 3 new latent frames
            num_inference_steps=request.num_inference_steps,
            guidance_scale=request.guidance_scale,
            generator=torch.Generator("cpu").manual_seed(request.seed),
            fixed=fixed,
        )
    decoded = np.concatenate(list(decode_wan_chunks(pipe.vae, latents)))
    assert np.array_equal(frames, decoded[WAN_CONTEXT_FRAMES : WAN_CONTEXT_FRAMES + 9])
    # It continues this context: another one gives other frames.
    assert not np.array_equal(frames_of(tiny_model, context=255 - context, num_frames=9), frames)


def test_extension_from_a_short_context_uses_what_there_is(tiny_model: LoadedModel) -> None:
    one_frame = smooth_image(64, 64)[None]
    frames = frames_of(tiny_model, context=one_frame, num_frames=13)
    assert frames.shape == (13, 64, 64, 3)


# -------------------------------------------------------------------------------------- video to video


def test_edit_keeps_the_size_and_length(tiny_model: LoadedModel) -> None:
    source = frames_of(tiny_model, seed=11, width=80, height=48)  # fitted to the 64x64 output
    frames = frames_of(tiny_model, source=source, strength=0.6)
    assert frames.shape == (9, 64, 64, 3)
    # A shorter source is padded with its last frame.
    assert frames_of(tiny_model, source=source[:6], strength=0.6).shape == (9, 64, 64, 3)
    assert np.array_equal(frames_of(tiny_model, source=source, strength=0.6), frames)


def test_strength_one_renoises_the_whole_source(tiny_model: LoadedModel) -> None:
    # At strength 1 the source is pure noise at the first step: text to video with that seed.
    source = frames_of(tiny_model, seed=11)
    assert np.array_equal(frames_of(tiny_model, source=source, strength=1.0), frames_of(tiny_model))


def test_the_result_moves_away_from_the_source_as_strength_grows(tiny_model: LoadedModel) -> None:
    pipe: Any = tiny_model.pipe
    source_frames = frames_of(tiny_model, seed=11)
    source = encode_wan(pipe.vae, source_frames)
    text = encode_wan_text(pipe, "a red kite", None, 5.0)

    def edited(strength: float) -> torch.Tensor:
        with torch.inference_mode():
            return denoise_wan(
                pipe,
                text,
                width=64,
                height=64,
                num_frames=9,
                num_inference_steps=10,
                guidance_scale=5.0,
                generator=torch.Generator("cpu").manual_seed(1),
                source=source,
                strength=strength,
            )

    # Latent-wise: strength 0.05 runs none of 10 steps (the source as it is); then further and further.
    assert torch.equal(edited(0.05), source)
    distances = [float((edited(s) - source).abs().mean()) for s in (0.2, 0.5, 1.0)]
    assert distances[0] < distances[1] < distances[2]
    # Pixel-wise: a light edit stays closer to the source's own decode than a full one.
    kept = frames_of(tiny_model, source=source_frames, strength=0.05, num_inference_steps=10)
    light = frames_of(tiny_model, source=source_frames, strength=0.2, num_inference_steps=10)
    full = frames_of(tiny_model, source=source_frames, strength=1.0, num_inference_steps=10)
    assert np.abs(light.astype(int) - kept).mean() < np.abs(full.astype(int) - kept).mean()


def test_a_long_edit_chains_over_the_source(tiny_model: LoadedModel) -> None:
    model = short_passes(tiny_model)
    source = frames_of(tiny_model, seed=11, num_frames=41)
    steps: list[StepInfo] = []
    frames = np.stack(list(generate(small_request(source=source, num_frames=41), steps.append, model=model)))
    assert frames.shape == (41, 64, 64, 3)
    # 3 segments (17 + 12 + 12 frames) of int(2 x 0.6) = 1 step each.
    assert [s.step for s in steps if s.phase == Phase.DENOISING] == [1, 2, 3]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"source": np.zeros((9, 64, 64, 3), np.uint8), "strength": 0.0}, "strength must be"),
        ({"source": np.zeros((9, 64, 64, 3), np.uint8), "strength": 1.5}, "strength must be"),
        (
            {"image": np.zeros((64, 64, 3), np.uint8), "context": np.zeros((5, 64, 64, 3), np.uint8)},
            "at most one",
        ),
        ({"image": np.zeros((9, 64, 64, 3), np.uint8)}, "image must be"),
        ({"context": np.zeros((0, 64, 64, 3), np.uint8)}, "context has no pixels"),
        ({"source": np.zeros((9, 64, 64, 4), np.uint8)}, "source must be"),
        ({"num_frames": TINY_WAN.max_frames_total + 4}, "at most 481 frames per request \\(60 s at 8 fps\\)"),
    ],
)
def test_requests_the_model_cannot_serve_are_refused(
    tiny_model: LoadedModel, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        next(generate(small_request(**changes), model=tiny_model))


# ----------------------------------------------------------------------------------- chained segments


def test_plan_segments_covers_the_request_with_passes_that_fit() -> None:
    # A 17-frame pass is 5 latent frames; later segments hold 2 and add 3 (12 frames).
    plan = plan_segments(41, frame_step=4, max_frames_per_pass=17, first_held=0, held=2)
    assert [(s.start, s.held, s.latent_frames, s.frames, s.skip) for s in plan] == [
        (0, 0, 5, 17, 0),
        (17, 2, 5, 12, 5),
        (29, 2, 5, 12, 5),
    ]
    # An extension holds the context's latent frames from the first segment; the last one is shorter.
    plan = plan_segments(9, frame_step=4, max_frames_per_pass=81, first_held=2, held=2)
    assert [(s.latent_frames, s.frames, s.decoded_frames) for s in plan] == [(5, 9, 17)]
    assert all(
        s.decoded_frames <= 17
        for s in plan_segments(45, frame_step=4, max_frames_per_pass=17, first_held=0, held=2)
    )
    with pytest.raises(ModelError, match="too short"):
        plan_segments(41, frame_step=4, max_frames_per_pass=5, first_held=0, held=2)


def test_a_long_request_is_chained_and_yields_exactly_num_frames(tiny_model: LoadedModel) -> None:
    model = short_passes(tiny_model)
    steps: list[StepInfo] = []
    frames = np.stack(list(generate(small_request(num_frames=65), steps.append, model=model)))
    assert frames.shape == (65, 64, 64, 3)
    # The first segment is the single-pass clip of its length with that seed.
    assert np.array_equal(frames[:17], frames_of(tiny_model, num_frames=17))
    # 17 + 4 x 12 frames: 5 segments of 2 steps, counted over the whole request, then the last decode.
    denoising = [(s.step, s.total_steps) for s in steps if s.phase == Phase.DENOISING]
    assert denoising == [(step, 10) for step in range(1, 11)]
    assert [s.phase for s in steps][-5:] == [Phase.DECODING] * 5
    assert np.array_equal(np.stack(list(generate(small_request(num_frames=65), model=model))), frames)


def test_image_to_video_chains_from_the_image(tiny_model: LoadedModel) -> None:
    image = smooth_image(64, 64)
    frames = np.stack(
        list(generate(small_request(image=image, num_frames=29), model=short_passes(tiny_model)))
    )
    assert frames.shape == (29, 64, 64, 3)
    assert np.array_equal(frames[0], image)


def torch_memory(model: LoadedModel, num_frames: int) -> tuple[int, int]:
    """(peak, held): the most bytes torch held on the CPU during a generation whose frames are dropped as
    they come (as the MP4 encoder takes them), and the most it held while handing a frame over, both
    above what it held before. From the profiler's record of every allocation and free."""
    marker = "frame handed over"
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for _ in generate(small_request(num_frames=num_frames), model=model):
            with record_function(marker):
                pass
    events = prof.profiler.kineto_results.events()  # type: ignore[union-attr]
    timeline = sorted(
        (e.start_ns(), e.nbytes() if e.name() == "[memory]" else None)
        for e in events
        if e.name() in ("[memory]", marker)
    )
    live = peak = held = 0
    for _, nbytes in timeline:
        if nbytes is None:
            held = max(held, live)
        else:
            live += nbytes
            peak = max(peak, live)
    return peak, held


def test_memory_does_not_grow_with_the_length_of_a_chained_request(tiny_model: LoadedModel) -> None:
    model = short_passes(tiny_model)
    # 2x and 4x the single pass: 33 and 65 frames, 3 and 5 segments.
    (peak_2x, held_2x), (peak_4x, held_4x) = torch_memory(model, 33), torch_memory(model, 65)
    # Measured: peak 14.6 MB and held 0.89 MB for both. Holding what a segment made after it is done
    # (its frames: 12 x 64 x 64 x 3 = 147 kB) would add that much per segment to `held`.
    assert held_4x <= held_2x + 16_000, (held_2x, held_4x)
    assert peak_4x <= peak_2x * 1.02, (peak_2x, peak_4x)
    assert 0 < held_2x < peak_2x
    # The same for arrays made outside torch (cropping copies, for a size off the latent grid).
    tracemalloc.start()
    python_peaks = []
    for n in (33, 65):
        tracemalloc.reset_peak()
        for _ in generate(small_request(num_frames=n, width=56, height=40), model=model):
            pass
        python_peaks.append(tracemalloc.get_traced_memory()[1])
    tracemalloc.stop()
    assert python_peaks[1] <= python_peaks[0] * 1.05 + 64_000, python_peaks


def test_cancel_mid_chain_stops_before_the_next_segment(tiny_model: LoadedModel) -> None:
    model = short_passes(tiny_model)
    steps: list[StepInfo] = []
    frames: list[np.ndarray] = []
    # Stop at the first step of the second segment (step 3 of 10).
    with pytest.raises(GenerationCanceled):
        for frame in generate(
            small_request(num_frames=65), steps.append, lambda: len(steps) >= 3, model=model
        ):
            frames.append(frame)
    assert len(frames) == 17  # the first segment only
    assert steps[-1] == StepInfo(Phase.DENOISING, 3, 10)


# ------------------------------------------------------------------------------ other pipeline classes


@pytest.fixture(scope="module")
def tiny_i2v(tiny_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """A Wan image-to-video pipeline (Wan 2.2 TI2V style: the image latent held, per-token timesteps)
    from the tiny Wan's components, saved and loaded as a local checkpoint."""
    parts = tiny_model.pipe.components
    path = tmp_path_factory.mktemp("tiny-wan-i2v")
    WanImageToVideoPipeline(
        tokenizer=parts["tokenizer"],
        text_encoder=parts["text_encoder"],
        vae=parts["vae"],
        scheduler=parts["scheduler"],
        transformer=parts["transformer"],
        expand_timesteps=True,
    ).save_pretrained(path)
    return load_pipeline(str(path), cache_dir=path, device="cpu")


def test_an_image_to_video_checkpoint_runs_its_own_pipeline(tiny_i2v: LoadedModel) -> None:
    model_id = tiny_i2v.spec.id
    assert tiny_i2v.spec.modes == ("image", "extend")
    image = smooth_image(64, 64)
    frames = np.stack(list(generate(small_request(image=image, model_id=model_id), model=tiny_i2v)))
    assert frames.shape == (9, 64, 64, 3) and np.array_equal(frames[0], image)
    # Extension (and chaining) continues from the last frame.
    context = np.stack([image] * 3)
    chained = short_passes(tiny_i2v)
    frames = list(generate(small_request(context=context, num_frames=25, model_id=model_id), model=chained))
    assert len(frames) == 25
    for changes, mode in (({}, "text to video"), ({"source": context}, "video to video")):
        with pytest.raises(ModelError, match=f"cannot run {mode}"):
            next(generate(small_request(model_id=model_id, **changes), model=tiny_i2v))


@pytest.mark.parametrize(
    ("pipeline_class", "changes", "message"),
    [
        (
            "LTXPipeline",
            {"image": np.zeros((64, 64, 3), np.uint8)},
            "LTXPipeline\\) cannot run image to video",
        ),
        ("CogVideoXPipeline", {"source": np.zeros((9, 64, 64, 3), np.uint8)}, "cannot run video to video"),
        (
            "CogVideoXPipeline",
            {"context": np.zeros((9, 64, 64, 3), np.uint8)},
            "cannot run extending a video",
        ),
        ("CogVideoXPipeline", {"num_frames": 57}, "at most 49 frames per request"),
        # 8k+1: an even number of latent frames would decode to 4 frames more than asked for.
        ("CogVideoXPipeline", {"num_frames": 13}, "8k\\+1 frames"),
    ],
)
def test_families_refuse_the_modes_they_cannot_run(
    tiny_model: LoadedModel, tmp_path: Path, pipeline_class: str, changes: dict[str, Any], message: str
) -> None:
    # The refusal comes from the spec, before the pipeline is touched: the tiny Wan stands in for it.
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": pipeline_class}))
    spec = get_spec(str(tmp_path))
    model = replace(tiny_model, spec=spec)
    with pytest.raises(ModelError, match=message):
        next(generate(small_request(model_id=spec.id, **changes), model=model))
