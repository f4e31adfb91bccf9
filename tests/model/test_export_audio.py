"""render_mp4 with a soundtrack: AAC exactly as long as the video, interleaved with it, read back by PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from model.export import AudioClip, ExportError, probe_mp4, read_audio, render_mp4
from tests.model.test_export import gradient_frames


def tone(seconds: float, rate: int, channels: int = 2, hz: float = 440.0) -> AudioClip:
    """A sine tone (AAC keeps it well), a quarter of full scale."""
    t = np.arange(round(seconds * rate), dtype=np.float32) / rate
    wave = 0.25 * np.sin(2 * np.pi * hz * t, dtype=np.float32)
    return AudioClip(np.stack([wave] * channels), rate)


def audio_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return float(stream.duration * stream.time_base)


@pytest.mark.parametrize("clip_s", [1.0, 2.125, 3.5])
def test_the_audio_is_cut_or_padded_to_the_video(tmp_path: Path, clip_s: float) -> None:
    path = tmp_path / "v.mp4"
    info = render_mp4(gradient_frames(17, 96, 64), path, fps=8, audio=tone(clip_s, 44100))
    assert audio_seconds(path) == pytest.approx(17 / 8, abs=1024 / 44100)
    assert info.audio is not None and info.audio.duration == pytest.approx(17 / 8, abs=1 / 44100)
    back = read_audio(path, sample_rate=44100, channels=2)
    assert back is not None
    if clip_s < 17 / 8:  # silence after the clip's end
        assert np.abs(back.samples[:, round(clip_s * 44100) + 2048 : 17 * 44100 // 8]).max() < 0.01


def test_the_sound_reads_back_as_it_went_in(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    clip = tone(2.0, 16000, channels=1)
    render_mp4(gradient_frames(16, 96, 64), path, fps=8, audio=clip)
    back = read_audio(path, sample_rate=16000, channels=1)
    assert back is not None and back.samples.shape[0] == 1
    n = clip.samples.shape[1]
    correlation = np.corrcoef(clip.samples[0, 2048 : n - 2048], back.samples[0, 2048 : n - 2048])[0, 1]
    assert correlation > 0.95


def test_a_rate_aac_does_not_take_is_resampled_to_48k(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    info = render_mp4(gradient_frames(9, 96, 64), path, fps=8, audio=tone(1.125, 22000, channels=1))
    probed = probe_mp4(path)
    assert probed.audio is not None and info.audio is not None
    assert (probed.audio.sample_rate, probed.audio.channels) == (48000, 1) == (info.audio.sample_rate, 1)
    assert audio_seconds(path) == pytest.approx(9 / 8, abs=1024 / 48000)


def test_audio_and_video_packets_are_interleaved(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    render_mp4(gradient_frames(40, 96, 64), path, fps=8, audio=tone(5.0, 44100))
    with av.open(str(path)) as container:
        order = [packet.stream.type for packet in container.demux() if packet.size]
    # Sound for the first seconds comes before the last frames, not after all of them.
    assert order.index("audio") < len(order) // 4
    assert max(i for i, kind in enumerate(order) if kind == "video") > len(order) * 3 // 4


def test_without_audio_there_is_no_audio_stream(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    info = render_mp4(gradient_frames(5, 96, 64), path, fps=8)
    assert info.audio is None and probe_mp4(path).audio is None
    assert read_audio(path, sample_rate=44100, channels=2) is None


@pytest.mark.parametrize(
    "clip",
    [
        AudioClip(np.zeros((3, 8000), np.float32), 16000),
        AudioClip(np.zeros(8000, np.float32), 16000),
        AudioClip(np.zeros((1, 8000), np.float32), 0),
    ],
)
def test_audio_that_is_not_mono_or_stereo_samples_is_refused(tmp_path: Path, clip: AudioClip) -> None:
    with pytest.raises(ExportError, match="audio"):
        render_mp4(gradient_frames(5, 96, 64), tmp_path / "v.mp4", fps=8, audio=clip)
    assert list(tmp_path.iterdir()) == []
