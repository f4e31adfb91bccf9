"""Wan's denoising loop, built from the pipeline's own parts, with what `WanPipeline.__call__` lacks.

`denoise_wan` is the loop of `WanPipeline.__call__` (its `encode_prompt`, `prepare_latents`, scheduler
and transformer, term for term) plus three things:
- guidance batching: both classifier-free-guidance branches in one transformer batch of 2 (the same
  arithmetic, half the kernel launches and weight reads, better GPU occupancy);
- fixed latent frames: the first k latent frames held at given latents while the rest is denoised. Their
  tokens get timestep 0 (per-token timesteps), as Wan 2.2 TI2V conditions on an image with
  `expand_timesteps` (diffusers' `WanImageToVideoPipeline`). Image to video fixes the image's latent;
  extension and chained segments fix the latents of the frames they continue;
- a source to start from (SDEdit, as `WanVideoToVideoPipeline`): its latents noised to `strength`, then
  the rest of the schedule.
It covers Wan 2.1 and Wan 2.2 (two experts split at `boundary_ratio`, per-token timesteps).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

# Concrete module paths: mypy cannot see through diffusers' lazy top-level exports.
from diffusers.pipelines.wan.pipeline_wan import WanPipeline

StepEndCallback = Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class WanText:
    """A prompt, and the negative prompt when guidance is on, encoded once for every segment of a request."""

    prompt: torch.Tensor
    negative: torch.Tensor | None  # None: guidance off (guidance_scale <= 1)


def encode_wan_text(
    pipe: WanPipeline,
    prompt: str,
    negative_prompt: str | None,
    guidance_scale: float,
    max_sequence_length: int = 512,
) -> WanText:
    """Encode the prompts as `WanPipeline.__call__` does, in the transformer's dtype."""
    guided = guidance_scale > 1.0
    prompt_embeds, negative_embeds = pipe.encode_prompt(
        prompt=prompt,
        negative_prompt=negative_prompt,
        do_classifier_free_guidance=guided,
        num_videos_per_prompt=1,
        max_sequence_length=max_sequence_length,
        device=pipe._execution_device,
    )
    dtype = _first_model(pipe).dtype
    return WanText(prompt_embeds.to(dtype), negative_embeds.to(dtype) if guided else None)


def strength_steps(num_inference_steps: int, strength: float) -> int:
    """How many of the schedule's steps a source re-noised by `strength` runs (diffusers' `get_timesteps`)."""
    return min(int(num_inference_steps * strength), num_inference_steps)


@torch.no_grad()
def denoise_wan(
    pipe: WanPipeline,
    text: WanText,
    *,
    width: int,
    height: int,
    num_frames: int,
    num_inference_steps: int,
    guidance_scale: float,
    generator: torch.Generator,
    batch_guidance: bool = False,
    fixed: torch.Tensor | None = None,
    source: torch.Tensor | None = None,
    strength: float = 1.0,
    callback_on_step_end: StepEndCallback | None = None,
) -> torch.Tensor:
    """Denoise one clip; returns its final latents (normalised), as `output_type="latent"` does.

    Sizes as `WanPipeline.__call__` accepts them unchanged (multiples of 16, `4k+1` frames). `fixed`
    (1, C, k, h, w) holds the first k latent frames; `source` (1, C, L, h, w) is the clip's latents to
    start from, re-noised by `strength` (only its last `strength_steps` steps run; none: the source as
    it is). The initial noise is drawn from `generator` exactly as the pipeline draws it, so without
    `fixed` and `source` the result is the pipeline's. The callback is called as the pipeline calls it.
    """
    device = pipe._execution_device
    config: Any = pipe.config  # a FrozenDict with attribute access; typed as a plain dict
    first_model = _first_model(pipe)
    guided = text.negative is not None
    pipe._guidance_scale = guidance_scale
    pipe._guidance_scale_2 = guidance_scale if config.boundary_ratio is not None else None
    pipe._attention_kwargs = None
    pipe._interrupt = False
    pipe._current_timestep = None

    pipe.scheduler.set_timesteps(num_inference_steps, device=device)
    start = num_inference_steps - strength_steps(num_inference_steps, strength) if source is not None else 0
    timesteps = pipe.scheduler.timesteps[start:]
    latents = pipe.prepare_latents(
        1, first_model.config.in_channels, height, width, num_frames, torch.float32, device, generator
    )
    if source is not None:
        # The flow-matching forward process (the scheduler's `scale_noise`) at the first step that runs.
        sigma = float(pipe.scheduler.sigmas[start]) if len(timesteps) else 0.0
        latents = sigma * latents + (1.0 - sigma) * source.to(device, torch.float32)
    pipe._num_timesteps = len(timesteps)
    pipe.scheduler.set_begin_index(start)

    # 1 where the latents are denoised, 0 where they are held at `fixed`.
    mask = torch.ones((1, 1, *latents.shape[2:]), dtype=torch.float32, device=device)
    if fixed is not None:
        mask[:, :, : fixed.shape[2]] = 0
        held = torch.zeros_like(latents)
        held[:, :, : fixed.shape[2]] = fixed.to(device, torch.float32)

        def blend(x: torch.Tensor) -> torch.Tensor:
            return mask * x + (1 - mask) * held

    else:

        def blend(x: torch.Tensor) -> torch.Tensor:
            return x

    per_token = fixed is not None or config.expand_timesteps
    if per_token:
        # One timestep per transformer token: the mask sampled at the patch grid (tokens of fixed frames: 0).
        p_t, p_h, p_w = first_model.config.patch_size
        token_mask = mask[0, 0, ::p_t, ::p_h, ::p_w].flatten()

    boundary = (
        config.boundary_ratio * pipe.scheduler.config.num_train_timesteps
        if config.boundary_ratio is not None
        else None
    )
    batch = 2 if guided and batch_guidance else 1
    for index, t in enumerate(timesteps):
        pipe._current_timestep = t
        # Wan 2.2: the high-noise expert above the boundary, the low-noise one below it.
        model = pipe.transformer if boundary is None or t >= boundary else pipe.transformer_2
        timestep = (token_mask * t).unsqueeze(0).expand(batch, -1) if per_token else t.expand(batch)
        model_input = blend(latents).to(first_model.dtype)
        context = {
            "step_index": start + index,
            "sigma": float(pipe.scheduler.sigmas[start + index]),
            "num_inference_steps": len(timesteps),
        }
        if batch == 2:
            assert text.negative is not None  # batch == 2 only with guidance
            with model.cache_context("cfg_batch", **context):
                both = model(
                    hidden_states=model_input.repeat(2, 1, 1, 1, 1),
                    timestep=timestep,
                    encoder_hidden_states=torch.cat([text.prompt, text.negative]),
                    attention_kwargs=None,
                    return_dict=False,
                )[0]
            noise_pred, noise_uncond = both.chunk(2)
        else:
            with model.cache_context("cond", **context):
                noise_pred = model(
                    hidden_states=model_input,
                    timestep=timestep,
                    encoder_hidden_states=text.prompt,
                    attention_kwargs=None,
                    return_dict=False,
                )[0]
            if text.negative is not None:
                with model.cache_context("uncond", **context):
                    noise_uncond = model(
                        hidden_states=model_input,
                        timestep=timestep,
                        encoder_hidden_states=text.negative,
                        attention_kwargs=None,
                        return_dict=False,
                    )[0]
        if guided:
            # The pipeline's guidance formula, term for term, so the result matches it to float rounding.
            noise_pred = noise_uncond + guidance_scale * (noise_pred - noise_uncond)
        latents = pipe.scheduler.step(noise_pred, t, latents, return_dict=False)[0]
        if callback_on_step_end is not None:
            outputs = callback_on_step_end(pipe, index, t, {"latents": latents})
            latents = outputs.pop("latents", latents)

    pipe._current_timestep = None
    pipe.maybe_free_model_hooks()
    return blend(latents)


def denoise_wan_cfg_batched(
    pipe: WanPipeline,
    *,
    prompt: str,
    negative_prompt: str | None,
    width: int,
    height: int,
    num_frames: int,
    num_inference_steps: int,
    guidance_scale: float,
    generator: torch.Generator,
    callback_on_step_end: StepEndCallback | None = None,
    max_sequence_length: int = 512,
) -> torch.Tensor:
    """Text to video with guidance batched; takes the arguments `WanPipeline.__call__` takes, returns latents.

    For `guidance_scale > 1` (without guidance there is nothing to batch).
    """
    text = encode_wan_text(pipe, prompt, negative_prompt, guidance_scale, max_sequence_length)
    return denoise_wan(
        pipe,
        text,
        width=width,
        height=height,
        num_frames=num_frames,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        generator=generator,
        batch_guidance=True,
        callback_on_step_end=callback_on_step_end,
    )


def _first_model(pipe: WanPipeline) -> Any:
    """The transformer that runs first (Wan 2.2 may ship only `transformer_2`)."""
    return pipe.transformer if pipe.transformer is not None else pipe.transformer_2
