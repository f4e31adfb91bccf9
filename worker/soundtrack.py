"""A job's soundtrack: made before its frames, as long as the whole MP4 it goes into.

Made first so that a cancel during it stops the job before the video's work starts, and so the encoder
interleaves sound and frames as the frames stream in (`model.export.render_mp4`). An extension's MP4
starts with its parent's frames: the parent's soundtrack (when it has one) is kept under them, and the
new sound continues it, crossfaded at the join; a parent without sound gets sound made for its part too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.audio import (
    CROSSFADE_S,
    AudioRequest,
    LoadedAudioModel,
    StepCallback,
    StopCheck,
    crossfade,
    generate_audio,
)
from model.export import AudioClip, read_audio


def make_soundtrack(
    model: LoadedAudioModel,
    *,
    prompt: str,
    seed: int,
    fps: int,
    frames: int,
    lead: Path | None = None,
    lead_frames: int = 0,
    steps: int | None = None,
    on_step: StepCallback | None = None,
    should_stop: StopCheck | None = None,
) -> AudioClip:
    """Sound for an MP4 of `lead_frames` + `frames` frames at `fps`, from `prompt` and `seed`.

    `lead` is the parent video an extension starts with (`lead_frames` long); its audio, when it has
    any, is kept. `steps`: the audio model's denoising steps (None: its default). Raises
    `GenerationCanceled` when `should_stop()` answers True, `ModelError` when the model fails.
    """
    rate = model.sample_rate
    # The sample count the encoder keeps for this many frames (`render_mp4` cuts or pads to it).
    total = (lead_frames + frames) * rate // fps
    kept = _parent_audio(lead, lead_frames * rate // fps, model) if lead is not None else None
    if kept is None:
        request = AudioRequest(prompt=prompt, duration_s=total / rate, seed=seed, num_inference_steps=steps)
        return generate_audio(request, on_step, should_stop, model=model)
    overlap = min(round(CROSSFADE_S * rate), kept.shape[1])
    new_s = (total - kept.shape[1] + overlap) / rate
    request = AudioRequest(prompt=prompt, duration_s=new_s, seed=seed, num_inference_steps=steps)
    new = generate_audio(request, on_step, should_stop, model=model)
    return AudioClip(crossfade(kept, new.samples, overlap), rate)


def _parent_audio(lead: Path, length: int, model: LoadedAudioModel) -> np.ndarray | None:
    """The parent video's sound at the model's rate and channels, exactly `length` samples; None when
    it has none."""
    parent = read_audio(lead, sample_rate=model.sample_rate, channels=model.channels)
    if parent is None or parent.samples.shape[1] == 0:
        return None
    samples = parent.samples[:, :length]
    return np.pad(samples, ((0, 0), (0, length - samples.shape[1])))
