"""Frames given as conditioning (an image, a video to continue or to edit): fitting and encoding them.

Every conditioning frame is first fitted to the output size (`fit_frame`: scaled to cover it, then
center-cropped), then edge-padded to the generation size (the output rounded up to the latent grid,
which `generate` crops back from the center), so a frame lines up pixel for pixel with the output.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan
from PIL import Image

from model.config import ModelError

# Latent frames a continuation holds fixed (Wan: 4(k-1)+1 = 5 pixel frames): enough to carry motion on.
CONTEXT_LATENT_FRAMES = 2
# Pixel frames of a video the continuation reads (its last ones): keep at least these for `context`.
# Enough for that many latent frames of the VAE that compresses time most (LTX-Video, 8x: 9 frames;
# Wan's 4x takes the last 5 of them).
CONTEXT_FRAMES = 8 * (CONTEXT_LATENT_FRAMES - 1) + 1


def check_frames(frames: np.ndarray, name: str, *, single: bool = False) -> None:
    """Refuse anything but uint8 RGB: (H, W, 3) for a single frame, else (T, H, W, 3) with T >= 1."""
    ndim = 3 if single else 4
    shape = "(H, W, 3)" if single else "(T, H, W, 3)"
    if not isinstance(frames, np.ndarray) or frames.ndim != ndim or frames.shape[-1] != 3:
        got = getattr(frames, "shape", type(frames).__name__)
        raise ModelError(f"{name} must be uint8 RGB frames of shape {shape}; got {got}")
    if frames.dtype != np.uint8:
        raise ModelError(f"{name} must be uint8; got {frames.dtype}")
    if min(frames.shape[:-1]) < 1:
        raise ModelError(f"{name} has no pixels (shape {frames.shape})")


def fit_frame(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """An (H, W, 3) uint8 frame scaled to cover `width`x`height`, then center-cropped to exactly that size.

    A frame already of that size comes back unchanged (as a contiguous array). Aspect ratio is kept:
    what sticks out of the output's aspect ratio is cut off, never stretched.
    """
    check_frames(frame, "a frame", single=True)
    in_height, in_width = frame.shape[:2]
    if (in_width, in_height) == (width, height):
        return np.ascontiguousarray(frame)
    scale = max(width / in_width, height / in_height)
    # Round up so the scaled frame covers the output on both axes.
    scaled_width = max(width, round(in_width * scale))
    scaled_height = max(height, round(in_height * scale))
    resized = np.asarray(
        Image.fromarray(np.ascontiguousarray(frame)).resize(
            (scaled_width, scaled_height), Image.Resampling.LANCZOS
        )
    )
    top = (scaled_height - height) // 2
    left = (scaled_width - width) // 2
    return np.ascontiguousarray(resized[top : top + height, left : left + width])


def pad_frame(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Edge-pad an (h, w, 3) frame to (height, width, 3), centred as `generate` crops the output."""
    pad_y, pad_x = height - frame.shape[0], width - frame.shape[1]
    if pad_y < 0 or pad_x < 0:
        raise ModelError(f"cannot pad a {frame.shape[1]}x{frame.shape[0]} frame to {width}x{height}")
    if pad_x == pad_y == 0:
        return frame
    return np.pad(
        frame, ((pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2), (0, 0)), mode="edge"
    )


def frames_for_generation(
    frames: np.ndarray, size: tuple[int, int], generation_size: tuple[int, int]
) -> np.ndarray:
    """(T, H, W, 3) frames fitted to the output `size` (w, h), then padded to `generation_size`."""
    return np.stack([pad_frame(fit_frame(f, *size), *generation_size) for f in frames])


def encode_wan(vae: AutoencoderKLWan, frames: np.ndarray) -> torch.Tensor:
    """Encode (T, H, W, 3) uint8 frames to normalised Wan latents (1, C, (T-1)//4+1, H/8, W/8).

    The mode of the latent distribution, normalised as `WanImageToVideoPipeline` normalises its
    condition, so the latents are in the space the transformer denoises in. T should be 4k+1.
    """
    # A copy: the frames may be a read-only array (a decoded image, a memory-mapped source).
    video = torch.from_numpy(np.array(frames, dtype=np.uint8)).permute(3, 0, 1, 2).unsqueeze(0)
    if hasattr(vae, "_hf_hook"):
        # With CPU offload the hook moves the VAE to the GPU inside `vae.encode`: too late for `vae.device`.
        vae._hf_hook.pre_forward(vae)
    video = (video.to(vae.device, vae.dtype) / 127.5) - 1.0
    with torch.inference_mode():
        latents = vae.encode(video).latent_dist.mode()
    config = vae.config
    shape = (1, config["z_dim"], 1, 1, 1)
    mean = torch.tensor(config["latents_mean"]).view(shape).to(latents.device, torch.float32)
    inv_std = 1.0 / torch.tensor(config["latents_std"]).view(shape).to(latents.device, torch.float32)
    return (latents.float() - mean) * inv_std
