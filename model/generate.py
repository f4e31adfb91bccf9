"""Run one text-to-video request and stream its frames: `generate(request, on_step, should_stop)`.

Wan pipelines stop at the latents and the VAE decodes them one latent frame at a time, so frames are
yielded (and can be encoded) while the rest of the clip is still being decoded.
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
from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan, unpatchify
from diffusers.pipelines.wan.pipeline_wan import WanPipeline

from model.config import GenerationCanceled, GenerationRequest, InferenceOptions, ModelError, Phase, StepInfo
from model.denoise import denoise_wan_cfg_batched
from model.pipeline import LoadedModel, load_pipeline
from model.speedups import reset_step_cache

StepCallback = Callable[[StepInfo], None]
StopCheck = Callable[[], bool]

_loaded: dict[tuple[str, Path, InferenceOptions], LoadedModel] = {}
_loaded_lock = threading.Lock()


def default_cache_dir() -> Path:
    """Where pipelines are built or cached: `$KINEMA_MODEL_CACHE_DIR`, else `~/.cache/kinema/models`."""
    configured = os.environ.get("KINEMA_MODEL_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "kinema" / "models"


def get_model(
    model_id: str, cache_dir: Path | None = None, options: InferenceOptions | None = None
) -> LoadedModel:
    """Load `model_id` once per process (per cache dir and options); later calls return the same model."""
    key = (model_id, cache_dir or default_cache_dir(), options or InferenceOptions())
    with _loaded_lock:
        if key not in _loaded:
            _loaded[key] = load_pipeline(model_id, cache_dir=key[1], options=key[2])
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
    `on_step` hears every denoising step and every decoded chunk; when `should_stop()` answers True
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
        if model.spec.family == "wan" and isinstance(model.pipe.vae, AutoencoderKLWan):
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
    """Refuse requests the pipeline would silently change (it rounds frame counts and sizes)."""
    spec = model.spec
    if request.model_id != spec.id:
        raise ModelError(f"request is for {request.model_id!r} but the loaded model is {spec.id!r}")
    if request.num_frames < 1 or (request.num_frames - 1) % spec.frame_step:
        raise ModelError(f"{spec.id} makes {spec.frame_step}k+1 frames; got num_frames={request.num_frames}")
    if request.num_frames > spec.max_frames_per_pass:
        raise ModelError(f"{spec.id} makes at most {spec.max_frames_per_pass} frames per pass")
    if not (0 < request.width <= spec.max_width and 0 < request.height <= spec.max_height):
        raise ModelError(
            f"{spec.id} accepts sizes up to {spec.max_width}x{spec.max_height}; "
            f"got {request.width}x{request.height}"
        )
    if request.num_inference_steps < 1:
        raise ModelError("num_inference_steps must be at least 1")


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
            on_step(StepInfo(Phase.DENOISING, index + 1, pipeline.num_timesteps))
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
    if "frame_rate" in inspect.signature(pipe.__call__).parameters:
        kwargs["frame_rate"] = request.fps  # LTX conditions its positional embedding on the frame rate
    if _batches_guidance(model, request, output_type):
        kwargs.pop("output_type")
        with torch.inference_mode():
            return denoise_wan_cfg_batched(pipe, **kwargs)
    with torch.inference_mode():
        return pipe(**kwargs).frames


def _batches_guidance(model: LoadedModel, request: GenerationRequest, output_type: str) -> bool:
    """Whether to run the batched-guidance Wan loop: asked for, a Wan pipeline, and guidance on at all."""
    return (
        model.options.cfg_batch
        and isinstance(model.pipe, WanPipeline)
        and request.guidance_scale > 1.0
        and output_type == "latent"
    )


def decode_wan_streaming(vae: AutoencoderKLWan, latents: torch.Tensor) -> Generator[torch.Tensor, None, None]:
    """Decode normalised Wan latents one latent frame at a time; yields (B, 3, t, H, W) in [-1, 1].

    Reproduces `AutoencoderKLWan._decode` (its causal feature cache carries state between chunks) and
    the de-normalisation `WanPipeline` applies first, so the chunks concatenated along time equal
    `vae.decode(latents * std + mean)`. The first chunk holds 1 frame, later ones the temporal factor.
    """
    if vae.use_tiling:
        # Tiled decode blends spatial tiles over the whole clip; it has no per-chunk form.
        with torch.inference_mode():
            yield vae.decode(_denormalize(vae, latents), return_dict=False)[0]
        return
    if getattr(vae, "_hf_hook", None) is not None:
        vae._hf_hook.pre_forward(vae)  # offloading hooks normally fire inside `vae.decode`
    patch_size = vae.config["patch_size"]
    with torch.inference_mode():
        z = vae.post_quant_conv(_denormalize(vae, latents))
    vae.clear_cache()
    try:
        for index in range(z.shape[2]):
            with torch.inference_mode():
                vae._conv_idx = [0]
                chunk = vae.decoder(
                    z[:, :, index : index + 1],
                    feat_cache=vae._feat_map,
                    feat_idx=vae._conv_idx,
                    first_chunk=index == 0,
                )
                if patch_size is not None:
                    chunk = unpatchify(chunk, patch_size=patch_size)
                chunk = torch.clamp(chunk, min=-1.0, max=1.0)
            yield chunk
    finally:
        vae.clear_cache()  # drop the cached activations even when the consumer stops early


def _denormalize(vae: AutoencoderKLWan, latents: torch.Tensor) -> torch.Tensor:
    """Undo the latent normalisation, exactly as `WanPipeline.__call__` does before `vae.decode`."""
    latents = latents.to(vae.device, vae.dtype)
    config = vae.config
    shape = (1, config["z_dim"], 1, 1, 1)
    latents_mean = torch.tensor(config["latents_mean"]).view(shape).to(latents.device, latents.dtype)
    latents_std = 1.0 / torch.tensor(config["latents_std"]).view(shape).to(latents.device, latents.dtype)
    return latents / latents_std + latents_mean


def video_to_uint8(video: torch.Tensor) -> torch.Tensor:
    """(1, 3, t, H, W) in [-1, 1] to (t, H, W, 3) uint8, rounding as diffusers' `numpy_to_pil` does."""
    frames = (video[0] / 2 + 0.5).clamp(0, 1).permute(1, 2, 3, 0).float()
    return (frames * 255).round().to(torch.uint8)


def _decode_wan_frames(
    vae: AutoencoderKLWan,
    latents: torch.Tensor,
    request: GenerationRequest,
    on_step: StepCallback | None,
    should_stop: StopCheck | None,
) -> Iterator[np.ndarray]:
    """Stream-decode the latents and yield cropped uint8 frames, a chunk at a time."""
    n_chunks = 1 if vae.use_tiling else latents.shape[2]
    chunks = decode_wan_streaming(vae, latents)
    made = 0
    try:
        for index in range(1, n_chunks + 1):
            if should_stop is not None and should_stop():
                raise GenerationCanceled
            chunk = video_to_uint8(next(chunks)).cpu().numpy()
            if on_step is not None:
                on_step(StepInfo(Phase.DECODING, index, n_chunks))
            for frame in chunk[: request.num_frames - made]:
                made += 1
                yield _crop(frame, request.width, request.height)
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
        frame_uint8 = (np.clip(frame, 0.0, 1.0) * 255).round().astype(np.uint8)
        yield _crop(frame_uint8, request.width, request.height)


def _crop(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Center-crop an (H, W, 3) frame to (height, width, 3) as a contiguous array."""
    top = (frame.shape[0] - height) // 2
    left = (frame.shape[1] - width) // 2
    return np.ascontiguousarray(frame[top : top + height, left : left + width])
