"""Run one generation request and stream its frames: `generate(request, on_step, should_stop)`.

Wan pipelines stop at the latents and the VAE decodes them one latent frame at a time, so frames are
yielded (and can be encoded) while the rest of the clip is still being decoded. One pass of text to
video runs the pipeline itself; conditioned requests (image, extension, video to video) and requests
longer than one pass run in `model.segments`.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Concrete module paths: mypy cannot see through diffusers' lazy top-level exports.
from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan
from diffusers.pipelines.wan.pipeline_wan import WanPipeline

from model.conditioning import check_frames
from model.config import GenerationCanceled, GenerationRequest, InferenceOptions, ModelError, Phase, StepInfo
from model.decode import crop_frame, decode_wan_chunks, decoded_chunk_count, float_frames_to_uint8
from model.decode import decode_wan_streaming as decode_wan_streaming
from model.decode import video_to_uint8 as video_to_uint8
from model.denoise import denoise_wan_cfg_batched
from model.pipeline import LoadedModel, load_pipeline
from model.registry import TEXT
from model.segments import generate_segments
from model.speedups import reset_step_cache

StepCallback = Callable[[StepInfo], None]
StopCheck = Callable[[], bool]

_loaded: dict[tuple[str, Path, InferenceOptions, str | None], LoadedModel] = {}
_loaded_lock = threading.Lock()


def default_cache_dir() -> Path:
    """Where pipelines are built or cached: `$KINEMA_MODEL_CACHE_DIR`, else `~/.cache/kinema/models`."""
    configured = os.environ.get("KINEMA_MODEL_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "kinema" / "models"


def get_model(
    model_id: str,
    cache_dir: Path | None = None,
    options: InferenceOptions | None = None,
    path: str | None = None,
) -> LoadedModel:
    """Load `model_id` once per process (per cache dir and options); later calls return the same model.

    `path`: where a model served under another name lives (see `model.pipeline.load_pipeline`).
    """
    key = (model_id, cache_dir or default_cache_dir(), options or InferenceOptions(), path)
    with _loaded_lock:
        if key not in _loaded:
            _loaded[key] = load_pipeline(model_id, cache_dir=key[1], options=key[2], path=path)
        return _loaded[key]


def generate(
    request: GenerationRequest,
    on_step: StepCallback | None = None,
    should_stop: StopCheck | None = None,
    *,
    model: LoadedModel | None = None,
) -> Generator[np.ndarray, None, None]:
    """Yield exactly `request.num_frames` contiguous uint8 frames of shape (height, width, 3).

    The pipeline runs at the spec's generation size (the request rounded up to the latent grid) and
    each frame is center-cropped back to the request. The same request always gives the same frames.
    With an `image` the first frame is the image (fitted); with `context` the frames are the new ones
    that follow it; with a `source` they are as many as `num_frames` (see `GenerationRequest`). Up to
    `spec.max_frames_total` frames: beyond `spec.max_frames_per_pass`, as chained segments.
    `on_step` hears every denoising step and every decoded chunk (for chained segments: steps counted
    over all of them, chunks of the last one); when `should_stop()` answers True
    (checked after each step and before each chunk) `GenerationCanceled` is raised and no frame follows.
    Raises `ModelError` for a request the model cannot serve. Call `.close()` on the generator to
    stop early and release the decoder's cache. The model's `InferenceOptions` apply (`cfg_batch` here,
    the others since loading); with the step cache on, `model.step_cache_stats` counts this generation.
    """
    if model is None:
        model = get_model(request.model_id)
    _check_request(request, model)
    if should_stop is not None and should_stop():
        raise GenerationCanceled
    reset_step_cache(model.pipe, model.step_cache_stats)
    try:
        if request.mode != TEXT or request.num_frames > model.spec.max_frames_per_pass:
            yield from generate_segments(request, model, on_step, should_stop)
        elif model.spec.family == "wan" and isinstance(model.pipe.vae, AutoencoderKLWan):
            latents = _denoise(request, model, on_step, should_stop, output_type="latent")
            yield from _decode_wan_frames(model.pipe.vae, latents, request, on_step, should_stop)
        else:
            video = _denoise(request, model, on_step, should_stop, output_type="np")
            if on_step is not None:
                on_step(StepInfo(Phase.DECODING, 1, 1))
            yield from _frames_from_array(video, request)
    finally:
        if model.device.type == "cuda":
            torch.cuda.empty_cache()


def _check_request(request: GenerationRequest, model: LoadedModel) -> None:
    """Refuse requests the pipeline would silently change (it rounds frame counts and sizes) or cannot run."""
    spec = model.spec
    if request.model_id != spec.id:
        raise ModelError(f"request is for {request.model_id!r} but the loaded model is {spec.id!r}")
    if request.num_frames < 1 or (request.num_frames - 1) % spec.frame_step:
        raise ModelError(f"{spec.id} makes {spec.frame_step}k+1 frames; got num_frames={request.num_frames}")
    if request.num_frames > spec.max_frames_total:
        raise ModelError(
            f"{spec.id} makes at most {spec.max_frames_total} frames per request "
            f"({spec.max_total_duration_s(max(request.fps, 1)):g} s at {request.fps} fps)"
        )
    if not (0 < request.width <= spec.max_width and 0 < request.height <= spec.max_height):
        raise ModelError(
            f"{spec.id} accepts sizes up to {spec.max_width}x{spec.max_height}; "
            f"got {request.width}x{request.height}"
        )
    if request.num_inference_steps < 1:
        raise ModelError("num_inference_steps must be at least 1")
    _check_conditioning(request, model)


_MODE_NAMES = {
    "text": "text to video",
    "image": "image to video",
    "extend": "extending a video",
    "edit": "video to video (edit, remix)",
}


def _check_conditioning(request: GenerationRequest, model: LoadedModel) -> None:
    """At most one conditioning input, well formed, for a mode the pipeline runs."""
    spec = model.spec
    given = [name for name in ("image", "context", "source") if getattr(request, name) is not None]
    if len(given) > 1:
        raise ModelError(f"give at most one of image, context and source; got {' and '.join(given)}")
    if request.image is not None:
        check_frames(request.image, "image", single=True)
    if request.context is not None:
        check_frames(request.context, "context")
    if request.source is not None:
        check_frames(request.source, "source")
        if not 0 < request.strength <= 1:
            raise ModelError(f"strength must be in (0, 1]; got {request.strength}")
    if request.mode not in spec.modes:
        served = ", ".join(_MODE_NAMES[mode] for mode in spec.modes)
        raise ModelError(
            f"{spec.id} ({spec.pipeline_class}) cannot run {_MODE_NAMES[request.mode]}; it runs: {served}"
        )


def _denoise(
    request: GenerationRequest,
    model: LoadedModel,
    on_step: StepCallback | None,
    should_stop: StopCheck | None,
    *,
    output_type: str,
) -> Any:
    """Run the pipeline's denoising loop; returns latents (Wan) or a float video array in [0, 1]."""
    pipe: Any = model.pipe  # each pipeline class has its own __call__ signature
    width, height = model.spec.generation_size(request.width, request.height)

    def on_step_end(pipeline: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if on_step is not None:
            on_step(StepInfo(Phase.DENOISING, index + 1, _total_steps(pipeline, request)))
        # Raising is the only way out: `pipe._interrupt` would still run the VAE decode.
        if should_stop is not None and should_stop():
            raise GenerationCanceled
        return {}

    kwargs: dict[str, Any] = {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt or None,
        "width": width,
        "height": height,
        "num_frames": request.num_frames,
        "num_inference_steps": request.num_inference_steps,
        "guidance_scale": request.guidance_scale,
        # A CPU generator gives the same initial noise for a seed on any device.
        "generator": torch.Generator("cpu").manual_seed(request.seed),
        "output_type": output_type,
        "callback_on_step_end": on_step_end,
    }
    accepted = inspect.signature(pipe.__call__).parameters
    if "frame_rate" in accepted:
        kwargs["frame_rate"] = request.fps  # LTX conditions its positional embedding on the frame rate
    if "callback_on_step_end" not in accepted:
        # Older pipelines (ModelScope's TextToVideoSD) call `callback(step, timestep, latents)` instead.
        kwargs.pop("callback_on_step_end")
        kwargs["callback"] = lambda index, timestep, _latents: on_step_end(pipe, index, timestep, {})
        kwargs["callback_steps"] = 1
    if _batches_guidance(model, request, output_type):
        kwargs.pop("output_type")
        with torch.inference_mode():
            return denoise_wan_cfg_batched(pipe, **kwargs)
    with torch.inference_mode():
        return pipe(**kwargs).frames


def _total_steps(pipe: Any, request: GenerationRequest) -> int:
    """The pipeline's step count (`num_timesteps`; older pipelines lack it and run the steps asked for)."""
    return int(getattr(pipe, "num_timesteps", None) or request.num_inference_steps)


def _batches_guidance(model: LoadedModel, request: GenerationRequest, output_type: str) -> bool:
    """Whether to run the batched-guidance Wan loop: asked for, a Wan pipeline, and guidance on at all."""
    return (
        model.options.cfg_batch
        and isinstance(model.pipe, WanPipeline)
        and request.guidance_scale > 1.0
        and output_type == "latent"
    )


def _decode_wan_frames(
    vae: AutoencoderKLWan,
    latents: torch.Tensor,
    request: GenerationRequest,
    on_step: StepCallback | None,
    should_stop: StopCheck | None,
) -> Iterator[np.ndarray]:
    """Stream-decode the latents and yield cropped uint8 frames, a chunk at a time."""
    n_chunks = decoded_chunk_count(vae, latents)
    chunks = decode_wan_chunks(vae, latents)
    made = 0
    try:
        for index in range(1, n_chunks + 1):
            if should_stop is not None and should_stop():
                raise GenerationCanceled
            chunk = next(chunks)
            if on_step is not None:
                on_step(StepInfo(Phase.DECODING, index, n_chunks))
            for frame in chunk[: request.num_frames - made]:
                made += 1
                yield crop_frame(frame, request.width, request.height)
    finally:
        chunks.close()
    if made != request.num_frames:
        raise ModelError(f"the VAE decoded {made} frames, not the {request.num_frames} asked for")


def _frames_from_array(video: np.ndarray, request: GenerationRequest) -> Iterator[np.ndarray]:
    """Yield the first `num_frames` frames of a pipeline's float [0, 1] (1, T, H, W, 3) output."""
    frames = video[0]
    if len(frames) < request.num_frames:
        raise ModelError(
            f"the pipeline made {len(frames)} frames, fewer than the {request.num_frames} asked for"
        )
    for frame in frames[: request.num_frames]:
        yield crop_frame(float_frames_to_uint8(frame), request.width, request.height)
