"""The soundtrack library: the tiny random-weight Stable Audio and AudioLDM 2 pipelines, built, saved and
loaded back as a deployment loads them, make exactly the requested length; the MP4 muxes it as AAC."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest

from model.audio import (
    BUILTIN_TINY_AUDIOLDM2,
    BUILTIN_TINY_STABLE_AUDIO,
    AudioRequest,
    LoadedAudioModel,
    crossfade,
    generate_audio,
    load_audio_pipeline,
    pass_lengths,
)
from model.config import GenerationCanceled, ModelError, Phase, StepInfo
from model.export import probe_mp4, render_mp4
from tests.model.test_export import gradient_frames


@pytest.fixture(scope="session")
def audio_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audio-cache")


@pytest.fixture(scope="session")
def stable_audio(audio_cache: Path) -> LoadedAudioModel:
    return load_audio_pipeline(BUILTIN_TINY_STABLE_AUDIO, cache_dir=audio_cache, device="cpu")


@pytest.fixture(scope="session")
def audioldm2(audio_cache: Path) -> LoadedAudioModel:
    return load_audio_pipeline(BUILTIN_TINY_AUDIOLDM2, cache_dir=audio_cache, device="cpu")


@pytest.fixture(params=["stable_audio", "audioldm2"])
def audio_model(request: pytest.FixtureRequest) -> LoadedAudioModel:
    model: LoadedAudioModel = request.getfixturevalue(request.param)
    return model


def test_the_builtins_are_stock_diffusers_directories(
    stable_audio: LoadedAudioModel, audioldm2: LoadedAudioModel, audio_cache: Path
) -> None:
    index = json.loads((audio_cache / "tiny-stable-audio-v1" / "model_index.json").read_text())
    assert index["_class_name"] == "StableAudioPipeline"
    assert (stable_audio.sample_rate, stable_audio.channels) == (44100, 2)
    assert stable_audio.max_duration_s == pytest.approx(10.03, abs=0.01)
    index = json.loads((audio_cache / "tiny-audioldm2-v1" / "model_index.json").read_text())
    assert index["_class_name"] == "AudioLDM2Pipeline"
    assert (audioldm2.sample_rate, audioldm2.channels, audioldm2.max_duration_s) == (16000, 1, None)


@pytest.mark.parametrize("duration_s", [0.125, 2.125])
def test_the_waveform_is_exactly_the_requested_length(
    audio_model: LoadedAudioModel, duration_s: float
) -> None:
    steps: list[StepInfo] = []
    clip = generate_audio(
        AudioRequest("rain on a tin roof", duration_s, seed=3), steps.append, model=audio_model
    )
    assert clip.sample_rate == audio_model.sample_rate
    assert clip.samples.shape == (audio_model.channels, round(duration_s * audio_model.sample_rate))
    assert clip.samples.dtype == np.float32
    assert np.isfinite(clip.samples).all() and np.abs(clip.samples).max() <= 1.0
    assert steps == [StepInfo(Phase.AUDIO, n, 4) for n in (1, 2, 3, 4)]


def test_the_same_request_makes_the_same_sound(audio_model: LoadedAudioModel) -> None:
    first = generate_audio(AudioRequest("a dog barks", 1.0, seed=11), model=audio_model)
    again = generate_audio(AudioRequest("a dog barks", 1.0, seed=11), model=audio_model)
    other = generate_audio(AudioRequest("a dog barks", 1.0, seed=12), model=audio_model)
    np.testing.assert_array_equal(first.samples, again.samples)
    assert not np.array_equal(first.samples, other.samples)


def test_a_clip_longer_than_one_pass_is_crossfaded_passes(stable_audio: LoadedAudioModel) -> None:
    # Passes of 2 s: 4.5 s is three of them (overlapping by 0.5 s), every step counted across them.
    short = replace(stable_audio, max_duration_s=2.0)
    steps: list[StepInfo] = []
    clip = generate_audio(
        AudioRequest("waves", 4.5, seed=1, num_inference_steps=2), steps.append, model=short
    )
    assert clip.samples.shape == (2, round(4.5 * 44100))
    assert [(s.step, s.total_steps) for s in steps] == [(n, 6) for n in range(1, 7)]
    # The first pass is the 2 s one pass would make alone.
    alone = generate_audio(AudioRequest("waves", 2.0, seed=1, num_inference_steps=2), model=short)
    head = 2 * 44100 - 22050  # before the crossfade into the second pass
    np.testing.assert_allclose(clip.samples[:, :head], alone.samples[:, :head], atol=1e-6)


def test_should_stop_cancels_during_the_audio(stable_audio: LoadedAudioModel) -> None:
    steps: list[StepInfo] = []
    with pytest.raises(GenerationCanceled):
        generate_audio(
            AudioRequest("thunder", 2.0, seed=1), steps.append, lambda: len(steps) >= 1, model=stable_audio
        )
    assert len(steps) == 1


def test_a_directory_loads_by_its_class_name(stable_audio: LoadedAudioModel, audio_cache: Path) -> None:
    directory = str(audio_cache / "tiny-stable-audio-v1")
    loaded = load_audio_pipeline(directory, cache_dir=audio_cache, device="cpu")
    assert (loaded.pipeline_class, loaded.default_steps, loaded.guidance_scale) == (
        "StableAudioPipeline",
        100,
        7.0,
    )
    # The same weights make the same sound as the built-in.
    request = AudioRequest("a bell", 0.5, seed=2, num_inference_steps=4)
    np.testing.assert_array_equal(
        generate_audio(request, model=loaded).samples, generate_audio(request, model=stable_audio).samples
    )


def test_other_directories_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a built-in"):
        load_audio_pipeline(str(tmp_path), cache_dir=tmp_path)
    (tmp_path / "model_index.json").write_text('{"_class_name": "WanPipeline"}')
    with pytest.raises(ModelError, match="supported: StableAudioPipeline, AudioLDM2Pipeline"):
        load_audio_pipeline(str(tmp_path), cache_dir=tmp_path)


def test_pass_lengths_cover_the_total_with_overlaps() -> None:
    assert pass_lengths(100, None, 10) == [100]
    assert pass_lengths(100, 100, 10) == [100]
    lengths = pass_lengths(250, 100, 10)
    assert lengths == [100, 100, 70]
    assert sum(lengths) - 10 * (len(lengths) - 1) == 250


def test_crossfade_joins_with_a_linear_fade() -> None:
    first, second = np.ones((1, 6), np.float32), np.zeros((1, 5), np.float32)
    joined = crossfade(first, second, 3)
    np.testing.assert_allclose(joined, [[1, 1, 1, 1, 0.5, 0, 0, 0]])


@pytest.mark.parametrize(("fps", "frames"), [(8, 17), (24, 33)])
def test_an_mp4_with_the_soundtrack_has_an_aac_stream_as_long_as_the_video(
    audio_model: LoadedAudioModel, tmp_path: Path, fps: int, frames: int
) -> None:
    clip = generate_audio(AudioRequest("a street market", frames / fps, seed=5), model=audio_model)
    path = tmp_path / "out.mp4"
    info = render_mp4(gradient_frames(frames, 96, 64), path, fps=fps, audio=clip)
    with av.open(str(path)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac"
        assert audio.codec_context.sample_rate == audio_model.sample_rate
        assert audio.codec_context.channels == audio_model.channels
        audio_s = float(audio.duration * audio.time_base)
    aac_frame_s = 1024 / audio_model.sample_rate
    assert audio_s == pytest.approx(frames / fps, abs=aac_frame_s)
    probed = probe_mp4(path)
    assert probed.frames == frames and probed.duration == pytest.approx(frames / fps)
    assert probed.audio is not None and info.audio is not None
    assert (probed.audio.codec, probed.audio.sample_rate) == ("aac", audio_model.sample_rate)
    assert info.audio.duration == pytest.approx(frames / fps, abs=aac_frame_s)
