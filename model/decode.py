"""Decode Wan latents one latent frame at a time, so frames stream out while the clip is still decoding."""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
import torch

# Concrete module paths: mypy cannot see through diffusers' lazy top-level exports.
from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan, unpatchify


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


def crop_frame(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Center-crop an (H, W, 3) frame to (height, width, 3) as a contiguous array."""
    top = (frame.shape[0] - height) // 2
    left = (frame.shape[1] - width) // 2
    return np.ascontiguousarray(frame[top : top + height, left : left + width])


def decode_wan_chunks(vae: AutoencoderKLWan, latents: torch.Tensor) -> Generator[np.ndarray, None, None]:
    """`decode_wan_streaming` as (t, H, W, 3) uint8 arrays; closing it early drops the decoder's cache."""
    chunks = decode_wan_streaming(vae, latents)
    try:
        for chunk in chunks:
            yield video_to_uint8(chunk).cpu().numpy()
    finally:
        chunks.close()


def decoded_chunk_count(vae: AutoencoderKLWan, latents: torch.Tensor) -> int:
    """How many chunks `decode_wan_streaming` yields for `latents`: one per latent frame, or one if tiled."""
    return 1 if vae.use_tiling else int(latents.shape[2])


def float_frames_to_uint8(frames: np.ndarray) -> np.ndarray:
    """A pipeline's float [0, 1] frames (..., H, W, 3) as uint8, rounding as `numpy_to_pil` does."""
    return (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)
