"""Conditioned generation (image to video, extension, video to video) and long requests as chained segments.

A request longer than one pass of the model is made as segments: each continues the last frames of
the one before (its `CONTEXT_LATENT_FRAMES` latent frames held fixed, as an extension holds the video it
continues), frames are yielded as each segment decodes, and only the current segment's latents and the
last `CONTEXT_FRAMES` frames are kept, so memory does not grow with the length of the video.

Text-to-video Wan pipelines condition in latent space (`model.denoise.denoise_wan`); image-to-video
pipelines (Wan I2V, LTX, CogVideoX) are given the first frame as their `image` and continue a video
from its last frame. The others take frames through their own arguments: Wan VACE a `video` whose
known frames are masked 0 (the rest gray, masked 1), LTX condition `conditions` at frame 0 (the image,
or the last frames of the video it continues), CogVideoX video to video the source `video` and a
`strength`.
"""

from __future__ import annotations

import inspect
import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# A concrete module path: mypy cannot see through diffusers' lazy top-level exports.
from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition
from PIL import Image

from model.conditioning import CONTEXT_LATENT_FRAMES, encode_wan, fit_frame, frames_for_generation, pad_frame
from model.config import GenerationCanceled, GenerationRequest, ModelError, Phase, StepInfo
from model.decode import crop_frame, decode_wan_chunks, decoded_chunk_count, float_frames_to_uint8
from model.denoise import WanText, denoise_wan, encode_wan_text, strength_steps
from model.pipeline import LoadedModel
from model.registry import (
    FRAME_CONDITION_PIPELINES,
    IMAGE_TO_VIDEO_PIPELINES,
    MASKED_VIDEO_PIPELINES,
    VIDEO_TO_VIDEO_PIPELINES,
)
from model.speedups import clear_step_cache

StepCallback = Callable[[StepInfo], None]
StopCheck = Callable[[], bool]

# VACE's fill for frames to generate (the gray of upstream's first-last-frame example); its mask values.
VACE_FILL = 128
VACE_KEEP, VACE_GENERATE = 0, 255


@dataclass(frozen=True, slots=True)
class Segment:
    """One pass of the model: `latent_frames` in all, the first `held` of them the frames it continues.

    It decodes `frame_step * (latent_frames - 1) + 1` frames; the first `skip` are the continued frames
    (already in the video, not yielded again) and the next `frames` are new, output frames
    `start` to `start + frames - 1`.
    """

    index: int
    start: int
    held: int
    latent_frames: int
    frames: int
    frame_step: int

    @property
    def skip(self) -> int:
        """Decoded frames that repeat the continued video: `frame_step * (held - 1) + 1`, or none."""
        return self.frame_step * (self.held - 1) + 1 if self.held else 0

    @property
    def decoded_frames(self) -> int:
        """Frames the pass makes, the continued ones included (a valid frame count for the model)."""
        return self.frame_step * (self.latent_frames - 1) + 1


def plan_segments(
    num_frames: int, *, frame_step: int, max_frames_per_pass: int, first_held: int, held: int
) -> list[Segment]:
    """The passes that make `num_frames` new frames, each at most `max_frames_per_pass` frames long.

    The first holds `first_held` latent frames of a video it continues (0: it starts the video), every
    later one the last `held` latent frames of the segment before it.
    """
    max_latents = (max_frames_per_pass - 1) // frame_step + 1
    if max_latents <= max(first_held, held):
        raise ModelError(f"a pass of {max_frames_per_pass} frames is too short to continue a video")
    segments: list[Segment] = []
    made = 0
    hold = first_held
    while made < num_frames:
        remaining = num_frames - made
        if hold:
            latents = min(max_latents, hold + math.ceil(remaining / frame_step))
            new = frame_step * (latents - hold)
        else:
            latents = min(max_latents, math.ceil((remaining - 1) / frame_step) + 1)
            new = frame_step * (latents - 1) + 1
        frames = min(new, remaining)
        segments.append(Segment(len(segments), made, hold, latents, frames, frame_step))
        made += frames
        hold = held
    return segments


class _Progress:
    """Denoising steps counted over every segment; decoded chunks reported for the last segment only.

    The decode of the other segments runs between denoising steps: reporting it as decoding would move
    a progress bar back and forth. Stops are checked after every step and before every chunk.
    """

    def __init__(self, on_step: StepCallback | None, should_stop: StopCheck | None, total_steps: int) -> None:
        self.on_step = on_step
        self.should_stop = should_stop
        self.total_steps = total_steps
        self.done = 0

    def check(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise GenerationCanceled

    def step(self) -> None:
        self.done += 1
        if self.on_step is not None:
            self.on_step(StepInfo(Phase.DENOISING, self.done, self.total_steps))
        self.check()  # raising is the only way out: `pipe._interrupt` would still run the VAE decode

    def on_step_end(
        self, pipeline: Any, index: int, timestep: Any, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        """A diffusers `callback_on_step_end`."""
        self.step()
        return {}

    def decoded(self, chunk: int, chunks: int, last_segment: bool) -> None:
        if last_segment and self.on_step is not None:
            self.on_step(StepInfo(Phase.DECODING, chunk, chunks))


def generate_segments(
    request: GenerationRequest,
    model: LoadedModel,
    on_step: StepCallback | None = None,
    should_stop: StopCheck | None = None,
) -> Iterator[np.ndarray]:
    """Yield the request's `num_frames` (height, width, 3) uint8 frames, segment by segment.

    For any mode on a pipeline that runs it (the caller checked `spec.modes`), one segment or many.
    With an `image` the first frame is the fitted image itself; with `context` only new frames come.
    """
    return _SegmentedRun(request, model, on_step, should_stop).frames()


class _SegmentedRun:
    """The state of one segmented generation: sizes, the seeded noise, the encoded prompt, the tail."""

    def __init__(
        self,
        request: GenerationRequest,
        model: LoadedModel,
        on_step: StepCallback | None,
        should_stop: StopCheck | None,
    ) -> None:
        spec = model.spec
        self.request = request
        self.model = model
        self.size = (request.width, request.height)
        self.generation_size = spec.generation_size(request.width, request.height)
        self.pipeline_class = spec.pipeline_class
        # Wan in latents; every other pipeline is called with its own conditioning arguments.
        self.latent_wan = not any(
            spec.pipeline_class in pipelines
            for pipelines in (
                IMAGE_TO_VIDEO_PIPELINES,
                MASKED_VIDEO_PIPELINES,
                FRAME_CONDITION_PIPELINES,
                VIDEO_TO_VIDEO_PIPELINES,
            )
        )
        # Image pipelines continue from one frame (their `image`); the others from the last latent frames.
        self.held = 1 if spec.pipeline_class in IMAGE_TO_VIDEO_PIPELINES else CONTEXT_LATENT_FRAMES
        self.tail: np.ndarray | None = None  # the last frames made, at the generation size
        first_held = 0
        if request.context is not None:
            available = (len(request.context) - 1) // spec.frame_step + 1
            first_held = min(self.held, available)
            keep = spec.frame_step * (first_held - 1) + 1
            self.tail = frames_for_generation(request.context[-keep:], self.size, self.generation_size)
        self.segments = plan_segments(
            request.num_frames,
            frame_step=spec.frame_step,
            max_frames_per_pass=spec.max_frames_per_pass,
            first_held=first_held,
            held=self.held,
        )
        self.steps = (
            strength_steps(request.num_inference_steps, request.strength)
            if request.source is not None
            else request.num_inference_steps
        )
        self.progress = _Progress(on_step, should_stop, self.steps * len(self.segments))
        # One CPU generator for the whole request: the same noise for a seed on any device.
        self.generator = torch.Generator("cpu").manual_seed(request.seed)
        self.image = fit_frame(request.image, *self.size) if request.image is not None else None

    def frames(self) -> Iterator[np.ndarray]:
        self.progress.check()
        text = self._encode_text() if self.latent_wan else None
        for segment in self.segments:
            self.progress.check()
            if self.model.step_cache_stats is not None:
                clear_step_cache(self.model.pipe)  # a new segment's first step must not reuse the last's
            decoded = self._wan_frames(segment, text) if text is not None else self._pipeline_frames(segment)
            yield from self._new_frames(segment, decoded)

    def _encode_text(self) -> WanText:
        request = self.request
        with torch.inference_mode():
            return encode_wan_text(
                self.model.pipe,  # type: ignore[arg-type]  # a WanPipeline: checked by the caller
                request.prompt,
                request.negative_prompt or None,
                request.guidance_scale,
            )

    def _new_frames(self, segment: Segment, decoded: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """Yield the segment's new frames (cropped) and keep its last frames (uncropped) as the next tail."""
        keep = segment.frame_step * (self.held - 1) + 1
        tail: deque[np.ndarray] = deque(maxlen=keep)
        made = 0
        try:
            for index, frame in enumerate(decoded):
                if index < segment.skip:
                    continue
                if segment.start + made == 0 and self.image is not None:
                    # The image itself: the built-in VAE has random weights, so its decode of the image's
                    # latent is not the image; a trained VAE's would be close, but lossy all the same.
                    frame = pad_frame(self.image, *self.generation_size)
                tail.append(frame)
                made += 1
                yield crop_frame(frame, *self.size)
                if made == segment.frames:
                    break
        finally:
            close = getattr(decoded, "close", None)
            if close is not None:
                close()  # stop decoding what is not needed; drop the decoder's cache
        if made != segment.frames:
            raise ModelError(f"segment {segment.index} made {made} frames, not the {segment.frames} planned")
        self.tail = np.stack(tail)

    # ------------------------------------------------------------------------------------ Wan, in latents

    def _wan_frames(self, segment: Segment, text: WanText) -> Iterator[np.ndarray]:
        request, model = self.request, self.model
        vae: Any = model.pipe.vae
        width, height = self.generation_size
        fixed = None
        if segment.held:
            assert self.tail is not None  # a held segment continues the frames before it
            fixed = encode_wan(vae, self.tail[-segment.skip :])
        elif segment.index == 0 and self.image is not None:
            fixed = encode_wan(vae, pad_frame(self.image, width, height)[None])
        source = self._source_latents(segment) if request.source is not None else None
        with torch.inference_mode():
            latents = denoise_wan(
                model.pipe,  # type: ignore[arg-type]  # a WanPipeline: checked by the caller
                text,
                width=width,
                height=height,
                num_frames=segment.decoded_frames,
                num_inference_steps=request.num_inference_steps,
                guidance_scale=request.guidance_scale,
                generator=self.generator,
                batch_guidance=model.options.cfg_batch,
                fixed=fixed,
                source=source,
                strength=request.strength,
                callback_on_step_end=self.progress.on_step_end,
            )
        del fixed, source
        return self._decode(segment, vae, latents)

    def _decode(self, segment: Segment, vae: Any, latents: torch.Tensor) -> Iterator[np.ndarray]:
        last = segment.index == len(self.segments) - 1
        chunks = decode_wan_chunks(vae, latents)
        count = decoded_chunk_count(vae, latents)
        try:
            for index in range(1, count + 1):
                self.progress.check()
                chunk = next(chunks)
                self.progress.decoded(index, count, last)
                yield from chunk
        finally:
            chunks.close()

    def _source_latents(self, segment: Segment) -> torch.Tensor:
        """The latents of the source frames under the segment's decoded frames (the last one repeated)."""
        return encode_wan(self.model.pipe.vae, self._source_window(segment))

    def _source_window(self, segment: Segment) -> np.ndarray:
        """The source frames under the segment's decoded frames (the last one repeated), fitted and padded."""
        source = self.request.source
        assert source is not None
        first = segment.start - segment.skip
        indices = np.minimum(np.arange(first, first + segment.decoded_frames), len(source) - 1)
        return frames_for_generation(source[indices], self.size, self.generation_size)

    # ------------------------------------------------------------------- pipelines called with frames

    def _pipeline_frames(self, segment: Segment) -> Iterator[np.ndarray]:
        """One pass of a pipeline given its conditioning frames through its own arguments."""
        request = self.request
        pipe: Any = self.model.pipe  # each pipeline class has its own __call__ signature
        if self.pipeline_class in VIDEO_TO_VIDEO_PIPELINES and self.steps == 0:
            # A strength that runs no step re-noises nothing: the source as it is (so does Wan's SDEdit).
            self.progress.decoded(1, 1, segment.index == len(self.segments) - 1)
            return iter(self._source_window(segment))
        width, height = self.generation_size
        kwargs: dict[str, Any] = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt or None,
            "width": width,
            "height": height,
            "num_frames": segment.decoded_frames,
            "num_inference_steps": request.num_inference_steps,
            "guidance_scale": request.guidance_scale,
            "generator": self.generator,
            "output_type": "np",
            "callback_on_step_end": self.progress.on_step_end,
            **self._conditioning(segment),
        }
        accepted = inspect.signature(pipe.__call__).parameters
        if "frame_rate" in accepted:
            kwargs["frame_rate"] = request.fps  # LTX conditions its positional embedding on the frame rate
        if "num_frames" not in accepted:
            kwargs.pop("num_frames")  # video to video makes as many frames as its source has
        with torch.inference_mode():
            video = pipe(**kwargs).frames[0]
        self.progress.check()
        self.progress.decoded(1, 1, segment.index == len(self.segments) - 1)
        return iter(float_frames_to_uint8(video))

    def _known_frames(self, segment: Segment) -> np.ndarray | None:
        """The frames a pass starts from, at generation size: the image, the frames it continues, or none."""
        if segment.held:
            assert self.tail is not None  # a held segment continues the frames before it
            return self.tail[-segment.skip :]
        if self.image is not None:
            return pad_frame(self.image, *self.generation_size)[None]
        return None

    def _conditioning(self, segment: Segment) -> dict[str, Any]:
        """The pipeline's own arguments for the segment's known frames (or source)."""
        pipe = self.model.pipe
        known = self._known_frames(segment)
        if self.pipeline_class in IMAGE_TO_VIDEO_PIPELINES:
            if known is None:
                raise ModelError(f"{type(pipe).__name__} needs an image or a video to continue")
            return {"image": Image.fromarray(known[-1])}
        if self.pipeline_class in VIDEO_TO_VIDEO_PIPELINES:
            window = self._source_window(segment)
            return {"video": [Image.fromarray(frame) for frame in window], "strength": self.request.strength}
        if known is None:
            return {}  # text to video (the first pass of a long request)
        if self.pipeline_class in MASKED_VIDEO_PIPELINES:
            return _vace_video_and_mask(known, segment.decoded_frames)
        if self.pipeline_class in FRAME_CONDITION_PIPELINES:
            if segment.held:
                condition = LTXVideoCondition(video=[Image.fromarray(f) for f in known], frame_index=0)
            else:
                condition = LTXVideoCondition(image=Image.fromarray(known[0]), frame_index=0)
            return {"conditions": [condition]}
        raise ModelError(f"{type(pipe).__name__} takes no frames to condition on")


def _vace_video_and_mask(known: np.ndarray, num_frames: int) -> dict[str, Any]:
    """VACE's `video` and `mask` for a clip of `num_frames` whose first frames are `known`.

    As upstream's first-last-frame example builds them: known frames masked black (kept), the frames to
    make filled gray and masked white (generated).
    """
    height, width = known.shape[1:3]
    fill = Image.new("RGB", (width, height), (VACE_FILL,) * 3)
    keep = Image.new("L", (width, height), VACE_KEEP)
    generate = Image.new("L", (width, height), VACE_GENERATE)
    count = min(len(known), num_frames)
    video = [Image.fromarray(frame) for frame in known[:count]] + [fill] * (num_frames - count)
    return {"video": video, "mask": [keep] * count + [generate] * (num_frames - count)}
