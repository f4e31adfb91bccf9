"""Training the Wan VAE on procedural clips: single frames first (cheap), then whole clips (the time axis).

Loss: L1 + MSE on pixels in [-1, 1] plus a light KL term that keeps the latents a tame scale; the
latents are normalised per channel afterwards (`latents_mean` / `latents_std` in the VAE's config), as
Wan pipelines expect.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from model.training.data import ClipConfig, draw_frame, plan_clip, render

# Seeds at or above this are kept for evaluation; training draws below it.
EVAL_SEED_BASE = 3_000_000_000
KL_WEIGHT = 1e-4
LATENT_NOISE = 0.05
StepHook = Callable[[int, float], None]
MakeBatch = Callable[[np.random.Generator, int], torch.Tensor]


class BatchStream(IterableDataset[torch.Tensor]):
    """An endless stream of `make_batch` batches; each loader worker draws from its own seeded generator."""

    def __init__(self, make_batch: MakeBatch, batch: int, seed: int) -> None:
        self.make_batch, self.batch, self.seed = make_batch, batch, seed

    def __iter__(self) -> Iterator[torch.Tensor]:
        worker = get_worker_info()
        rng = np.random.default_rng(self.seed if worker is None else [self.seed, worker.id])
        while True:
            yield self.make_batch(rng, self.batch)


def cosine_decay(done: float, floor: float = 0.05) -> float:
    """The learning-rate factor when `done` (0 to 1) of the training is done: from 1 down to `floor`."""
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, done))))


def batches(make_batch: MakeBatch, batch: int, seed: int, workers: int) -> Iterator[torch.Tensor]:
    """Batches drawn in this process (`workers=0`), or by that many loader processes ahead of the GPU.

    Drawing clips with Pillow takes longer than a training step on a GPU, so there the drawing runs
    in parallel; on the CPU it would only compete with the training for the same cores.
    """
    stream = BatchStream(make_batch, batch, seed)
    if workers <= 0:
        return iter(stream)
    pin = torch.cuda.is_available()
    return iter(DataLoader(stream, batch_size=None, num_workers=workers, prefetch_factor=4, pin_memory=pin))


def to_model_range(frames: np.ndarray) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 -> (B, 3, T, H, W) float in [-1, 1]."""
    return torch.from_numpy(frames).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0


def to_pixels(video: torch.Tensor) -> np.ndarray:
    """(B, 3, T, H, W) in [-1, 1] -> (B, T, H, W, 3) uint8: `to_model_range` undone, as a decoder's output."""
    pixels = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte()
    return pixels.permute(0, 2, 3, 4, 1).cpu().numpy()


def frame_batch(rng: np.random.Generator, batch: int, config: ClipConfig) -> torch.Tensor:
    """`batch` single frames (B, 3, 1, H, W) from random training clips at random points of their motion."""
    frames = []
    for _ in range(batch):
        plan = plan_clip(int(rng.integers(EVAL_SEED_BASE)), config)
        frames.append(draw_frame(plan.background, plan.shapes, float(rng.random()), config)[None])
    return to_model_range(np.stack(frames))


def clip_batch(rng: np.random.Generator, batch: int, config: ClipConfig) -> torch.Tensor:
    """`batch` whole training clips (B, 3, T, H, W)."""
    clips = []
    for _ in range(batch):
        plan = plan_clip(int(rng.integers(EVAL_SEED_BASE)), config)
        clips.append(render(plan.background, plan.shapes, config))
    return to_model_range(np.stack(clips))


def noised(latents: torch.Tensor) -> torch.Tensor:
    """`latents` with a little noise of a fixed share of their spread, so a decoder trained on them
    tolerates a denoiser's small errors. Not a posterior's own noise: its variance starts at 1, which
    drowns the early latents and makes learning crawl."""
    return latents + LATENT_NOISE * latents.detach().std() * torch.randn_like(latents)


def reconstruction_loss(
    vae: AutoencoderKLWan, video: torch.Tensor, *, decoder_only: bool = False
) -> torch.Tensor:
    """L1 + MSE of the reconstruction of the latent mean (lightly noised), plus the weighted KL divergence.

    `decoder_only`: the encoder is frozen and its latent's mode decoded (the latents a transformer
    trains on stay the same), with the same light noise, so the loss is the reconstruction alone.
    """
    if decoder_only:
        with torch.no_grad():
            latents = vae.encode(video).latent_dist.mode()
        reconstruction = vae.decode(noised(latents)).sample
        return F.l1_loss(reconstruction, video) + F.mse_loss(reconstruction, video)
    posterior = vae.encode(video).latent_dist
    reconstruction = vae.decode(noised(posterior.mode())).sample
    kl = posterior.kl().mean() / posterior.mean[0].numel()  # per latent element: keeps the mean's scale tame
    return F.l1_loss(reconstruction, video) + F.mse_loss(reconstruction, video) + KL_WEIGHT * kl


def train_vae_stage(
    vae: AutoencoderKLWan,
    *,
    steps: int,
    batch: int,
    lr: float,
    make_batch: MakeBatch,
    device: torch.device,
    seed: int,
    decoder_only: bool = False,
    on_step: StepHook | None = None,
    workers: int = 0,
    deadline: float | None = None,
) -> list[float]:
    """Train `vae` for `steps` AdamW steps on batches from `make_batch`; returns the loss of every step.

    `decoder_only` trains the decoder (and the convolution before it) with the encoder frozen.
    `workers`: loader processes drawing the batches (see `batches`). `deadline`: a `time.monotonic()`
    at which the stage stops early.
    """
    stream = batches(make_batch, batch, seed, workers)
    torch.manual_seed(seed)
    vae.train()
    modules = (vae.decoder, vae.post_quant_conv) if decoder_only else (vae,)
    params = [p for module in modules for p in module.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    losses = []
    started = time.monotonic()
    for step in range(steps):
        now = time.monotonic()
        if deadline is not None and now > deadline:
            break
        video = next(stream).to(device, non_blocking=True)
        # Linear warm-up over the first 5% of steps (10 to 200): Adam's first steps are large. Then a
        # cosine decay over the steps or the time allowed, whichever runs out first.
        done = step / steps if deadline is None else max(step / steps, (now - started) / (deadline - started))
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / min(200, max(10, steps // 20))) * cosine_decay(done)
        loss = reconstruction_loss(vae, video, decoder_only=decoder_only)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step, losses[-1])
    vae.eval()
    return losses


@torch.no_grad()
def reconstruct(vae: AutoencoderKLWan, frames: np.ndarray, device: torch.device) -> np.ndarray:
    """(T, H, W, 3) uint8 frames encoded (latent mode) and decoded by `vae`: what it keeps of them."""
    video = to_model_range(frames[None]).to(device, vae.dtype)
    return to_pixels(vae.decode(vae.encode(video).latent_dist.mode()).sample)[0]


def psnr(pixels: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB of uint8 `pixels` against `reference`."""
    mse = float(np.mean((pixels.astype(np.float64) - reference) ** 2))
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def reconstruction_psnr(
    vae: AutoencoderKLWan, seeds: Sequence[int], config: ClipConfig, device: torch.device
) -> float:
    """Mean PSNR (dB, on uint8 pixels) of whole clips encoded (latent mode) and decoded."""
    scores = []
    for seed in seeds:
        plan = plan_clip(seed, config)
        frames = render(plan.background, plan.shapes, config)
        scores.append(psnr(reconstruct(vae, frames, device), frames))
    return float(np.mean(scores))
