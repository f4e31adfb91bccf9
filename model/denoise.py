"""Wan's denoising loop with both classifier-free-guidance branches in one transformer batch.

`WanPipeline.__call__` runs the transformer twice per step (with the prompt, then with the negative
prompt). `denoise_wan_cfg_batched` is the same loop built from the pipeline's own parts
(`encode_prompt`, `prepare_latents`, its scheduler and transformer) but runs one batch of 2 per step:
the same arithmetic, half the kernel launches and weight reads, better GPU occupancy. It covers
Wan 2.1 and Wan 2.2 (two experts split at `boundary_ratio`, per-token timesteps).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

# Concrete module paths: mypy cannot see through diffusers' lazy top-level exports.
from diffusers.pipelines.wan.pipeline_wan import WanPipeline

StepEndCallback = Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]


@torch.no_grad()
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
    """Run Wan's denoising with guidance batched; returns the final latents, as `output_type="latent"`.

    Takes the arguments `WanPipeline.__call__` takes, for sizes it accepts unchanged (multiples of 16,
    `4k+1` frames) and `guidance_scale > 1`. The callback is called as the pipeline calls it.
    """
    device = pipe._execution_device
    config: Any = pipe.config  # a FrozenDict with attribute access; typed as a plain dict
    pipe._guidance_scale = guidance_scale
    pipe._guidance_scale_2 = guidance_scale if config.boundary_ratio is not None else None
    pipe._attention_kwargs = None
    pipe._interrupt = False
    pipe._current_timestep = None

    prompt_embeds, negative_prompt_embeds = pipe.encode_prompt(
        prompt=prompt,
        negative_prompt=negative_prompt,
        do_classifier_free_guidance=True,
        num_videos_per_prompt=1,
        max_sequence_length=max_sequence_length,
        device=device,
    )
    first_model = pipe.transformer if pipe.transformer is not None else pipe.transformer_2
    transformer_dtype = first_model.dtype
    # Both are padded to max_sequence_length, so they stack: row 0 the prompt, row 1 the negative prompt.
    text = torch.cat([prompt_embeds, negative_prompt_embeds]).to(transformer_dtype)

    pipe.scheduler.set_timesteps(num_inference_steps, device=device)
    timesteps = pipe.scheduler.timesteps
    latents = pipe.prepare_latents(
        1, first_model.config.in_channels, height, width, num_frames, torch.float32, device, generator
    )
    pipe._num_timesteps = len(timesteps)
    pipe.scheduler.set_begin_index(0)
    boundary = (
        config.boundary_ratio * pipe.scheduler.config.num_train_timesteps
        if config.boundary_ratio is not None
        else None
    )
    if config.expand_timesteps:
        # Wan 2.2 TI2V gives every latent token its own timestep (all equal for text-to-video).
        token_mask = torch.ones(latents.shape[2:], dtype=torch.float32, device=device)[:, ::2, ::2].flatten()

    for index, t in enumerate(timesteps):
        pipe._current_timestep = t
        # Wan 2.2: the high-noise expert above the boundary, the low-noise one below it.
        model = pipe.transformer if boundary is None or t >= boundary else pipe.transformer_2
        timestep = (token_mask * t).unsqueeze(0).expand(2, -1) if config.expand_timesteps else t.expand(2)
        model_input = latents.to(transformer_dtype).repeat(2, 1, 1, 1, 1)
        context = {"step_index": index, "sigma": float(pipe.scheduler.sigmas[index])}
        with model.cache_context("cfg_batch", num_inference_steps=len(timesteps), **context):
            both = model(
                hidden_states=model_input,
                timestep=timestep,
                encoder_hidden_states=text,
                attention_kwargs=None,
                return_dict=False,
            )[0]
        noise_cond, noise_uncond = both.chunk(2)
        # The pipeline's guidance formula, term for term, so the result matches it to float rounding.
        noise_pred = noise_uncond + guidance_scale * (noise_cond - noise_uncond)
        latents = pipe.scheduler.step(noise_pred, t, latents, return_dict=False)[0]
        if callback_on_step_end is not None:
            outputs = callback_on_step_end(pipe, index, t, {"latents": latents})
            latents = outputs.pop("latents", latents)

    pipe._current_timestep = None
    pipe.maybe_free_model_hooks()
    return latents
