"""Training the text encoder and the Wan transformer with flow matching on pre-encoded clip latents.

The transformer sees exactly what `WanPipeline` gives it at inference: normalised latents, the text
encoder's output trimmed to the prompt's tokens and zero-padded to 512, and timesteps `1000 * sigma`
where `x_sigma = (1 - sigma) * x_0 + sigma * noise` and the target is `noise - x_0` (the velocity the
flow-match Euler scheduler integrates). A share of the samples hold their first one or two latent frames
clean, at timestep 0 per token, which is how `model.denoise` conditions on an image or on the frames a
continuation follows; one caption in ten is empty, for classifier-free guidance.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan
from diffusers.models.transformers.transformer_wan import (
    WanAttention,
    WanAttnProcessor,
    WanTransformer3DModel,
)
from torch.utils.data import DataLoader, Dataset
from transformers import PreTrainedTokenizerBase, UMT5EncoderModel

from model.training.data import ClipConfig, ClipPlan, plan_clip, recaption, render
from model.training.vae import cosine_decay, to_model_range

# WanPipeline pads every prompt's embeddings with zeros to this many tokens.
MAX_SEQUENCE_LENGTH = 512
DROP_CAPTION = 0.1
CONDITIONED_SHARE = 0.25
StepHook = Callable[[int, float], None]


@dataclass(slots=True)
class LatentSet:
    """Training clips as VAE latents (posterior means, not yet normalised) with their plans and seeds."""

    latents: torch.Tensor  # (N, C, F, h, w) float16
    plans: list[ClipPlan]
    seeds: list[int]


class RenderedClips(Dataset[np.ndarray]):
    """The clips of a list of plans, drawn on demand (so loader processes can draw them in parallel)."""

    def __init__(self, plans: Sequence[ClipPlan], config: ClipConfig) -> None:
        self.plans, self.config = plans, config

    def __len__(self) -> int:
        return len(self.plans)

    def __getitem__(self, index: int) -> np.ndarray:
        plan = self.plans[index]
        return render(plan.background, plan.shapes, self.config)


@torch.no_grad()
def encode_clips(
    vae: AutoencoderKLWan,
    seeds: Sequence[int],
    config: ClipConfig,
    device: torch.device,
    *,
    batch: int = 8,
    on_batch: Callable[[int], None] | None = None,
    workers: int = 0,
) -> LatentSet:
    """Draw the clips of `seeds` and encode them with `vae` (the latent distribution's mean).

    `workers`: loader processes drawing the clips while the VAE encodes (0: drawn here, in order).
    """
    plans = [plan_clip(seed, config) for seed in seeds]
    loader = DataLoader(
        RenderedClips(plans, config), batch_size=batch, num_workers=max(0, workers), collate_fn=np.stack
    )
    chunks, done = [], 0
    for frames in loader:
        latents = vae.encode(to_model_range(frames).to(device)).latent_dist.mode()
        chunks.append(latents.to("cpu", torch.float16))
        done += len(frames)
        if on_batch is not None:
            on_batch(done)
    return LatentSet(latents=torch.cat(chunks), plans=plans, seeds=list(seeds))


def latent_statistics(latents: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of (N, C, F, h, w) latents (for the VAE's config)."""
    flat = latents.float().transpose(0, 1).reshape(latents.shape[1], -1)
    return flat.mean(1).tolist(), flat.std(1).clamp_min(1e-4).tolist()


def encode_text(
    tokenizer: PreTrainedTokenizerBase,
    text_encoder: UMT5EncoderModel,
    captions: Sequence[str],
    device: torch.device,
    *,
    full_length: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Embeddings as `WanPipeline._get_t5_prompt_embeds` makes them (with gradients), and a key bias.

    The pipeline keeps each prompt's own tokens and zero-fills the rest up to 512. Every zero row
    becomes the same key and value in cross-attention, so `full_length=False` keeps the longest
    prompt's tokens and one zero row, and returns the attention bias (log of how many zero rows it
    stands for) that `PaddedContextProcessor` adds: the same attention, at a fraction of the cost.
    With `full_length` the bias is None.
    """
    tokens = tokenizer(
        list(captions),
        padding="longest",
        truncation=True,
        max_length=MAX_SEQUENCE_LENGTH,
        return_tensors="pt",
    )
    ids, mask = tokens.input_ids.to(device), tokens.attention_mask.to(device)
    hidden = text_encoder(ids, mask).last_hidden_state * mask[..., None].to(device)
    longest = hidden.shape[1]
    if full_length or longest >= MAX_SEQUENCE_LENGTH:
        return F.pad(hidden, (0, 0, 0, MAX_SEQUENCE_LENGTH - longest)), None
    bias = torch.zeros(1, 1, 1, longest + 1, device=device)
    bias[..., -1] = float(np.log(MAX_SEQUENCE_LENGTH - longest))
    return F.pad(hidden, (0, 0, 0, 1)), bias


class PaddedContextProcessor(WanAttnProcessor):
    """Wan's attention, adding `bias` to cross-attention logits (see `encode_text(full_length=False)`)."""

    def __init__(self) -> None:
        super().__init__()
        self.bias: torch.Tensor | None = None

    def __call__(
        self,
        attn: torch.nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None and self.bias is not None:
            attention_mask = self.bias.to(hidden_states.dtype)
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)  # type: ignore[arg-type]


def sample_sigmas(generator: torch.Generator, count: int, shift: float) -> torch.Tensor:
    """Noise levels in (0, 1): logit-normal, then shifted as the scheduler shifts its own."""
    u = torch.sigmoid(torch.randn(count, generator=generator))
    return shift * u / (1 + (shift - 1) * u)


class EMA:
    """An exponential moving average of a module's weights (what gets saved: it samples better)."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        """Move the average towards `module`'s weights (faster during the first updates)."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        averages: list[torch.Tensor] = list(self.shadow.parameters())
        currents = [p.detach() for p in module.parameters()]
        assert len(averages) == len(currents)
        torch._foreach_lerp_(averages, currents, 1 - decay)  # one fused update, not one per tensor


@dataclass
class FlowTrainer:
    """The flow-matching training state: models, their averages, the optimizer and the data."""

    transformer: WanTransformer3DModel
    text_encoder: UMT5EncoderModel
    tokenizer: PreTrainedTokenizerBase
    data: LatentSet
    mean: torch.Tensor  # (1, C, 1, 1, 1) latents_mean
    std: torch.Tensor  # (1, C, 1, 1, 1) latents_std
    shift: float
    lr: float
    device: torch.device
    seed: int
    ema_decay: float = 0.999
    warmup: int = 200
    step: int = 0
    done: float = 0.0  # the share of the training done (steps or time): drives the learning-rate decay

    def __post_init__(self) -> None:
        for module in (self.transformer, self.text_encoder):
            torch.nn.Module.to(module, self.device).train()  # ModelMixin's `to` is typed for pipelines only
        params = [*self.transformer.parameters(), *self.text_encoder.parameters()]
        self.optimizer = torch.optim.AdamW(params, lr=self.lr, betas=(0.9, 0.99), weight_decay=0.01)
        self.ema_transformer = EMA(self.transformer, self.ema_decay)
        self.ema_text_encoder = EMA(self.text_encoder, self.ema_decay)
        # Only the trained copy gets the short-context processor; the averages keep the stock one.
        self.processor = PaddedContextProcessor()
        for name, module in self.transformer.named_modules():
            if isinstance(module, WanAttention) and name.endswith("attn2"):
                module.set_processor(self.processor)  # type: ignore[arg-type]  # a WanAttnProcessor
        self.generator = torch.Generator("cpu").manual_seed(self.seed)
        self.rng = np.random.default_rng(self.seed)

    def batch(self, size: int) -> tuple[torch.Tensor, list[str]]:
        """`size` random clips' normalised latents and a freshly drawn caption for each (some empty)."""
        index = self.rng.integers(len(self.data.seeds), size=size)
        latents = (self.data.latents[torch.from_numpy(index)].float() - self.mean) / self.std
        captions = []
        for i in index:
            drop = self.rng.random() < DROP_CAPTION
            draw = int(self.rng.integers(1 << 30))
            captions.append("" if drop else recaption(self.data.plans[i], self.data.seeds[i], draw))
        return latents, captions

    def train_step(self, size: int) -> float:
        """One AdamW step on a batch of `size`; returns the loss."""
        x0, captions = self.batch(size)
        x0 = x0.to(self.device)
        b, _, frames, h, w = x0.shape
        p_t, p_h, p_w = self.transformer.config["patch_size"]
        noise = torch.randn(x0.shape, generator=self.generator).to(self.device)
        sigma = sample_sigmas(self.generator, b, self.shift).to(self.device)
        # Held latent frames per sample: 0 for most, 1 or 2 (image to video, continuation) for some.
        held = torch.zeros(b, dtype=torch.long)
        conditioned = torch.rand(b, generator=self.generator) < CONDITIONED_SHARE
        held[conditioned] = torch.randint(1, 3, (int(conditioned.sum()),), generator=self.generator)
        frame_index = torch.arange(frames)[None, :]
        free = (frame_index >= held[:, None]).float().to(self.device)  # (B, F): 1 where denoised
        free_5d = free[:, None, :, None, None]
        s = sigma[:, None, None, None, None]
        noisy = free_5d * ((1 - s) * x0 + s * noise) + (1 - free_5d) * x0
        # Per-token timesteps, as `model.denoise` passes them: 0 on held frames' tokens.
        tokens_per_frame = (h // p_h) * (w // p_w)
        free_tokens = free[:, ::p_t].repeat_interleave(tokens_per_frame, dim=1)
        timestep = free_tokens * (sigma[:, None] * 1000)
        context, self.processor.bias = encode_text(
            self.tokenizer, self.text_encoder, captions, self.device, full_length=False
        )
        prediction = self.transformer(noisy, timestep, context, return_dict=False)[0]
        error = (prediction.float() - (noise - x0)) ** 2 * free_5d
        loss = error.sum() / (free_5d.sum() * x0.shape[1] * h * w).clamp_min(1)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * min(1.0, (self.step + 1) / self.warmup) * cosine_decay(self.done)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [*self.transformer.parameters(), *self.text_encoder.parameters()]
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        self.optimizer.step()
        self.ema_transformer.update(self.transformer)
        self.ema_text_encoder.update(self.text_encoder)
        self.step += 1
        return float(loss.detach())

    def state_dict(self) -> dict[str, object]:
        """Everything needed to resume: weights, averages, optimizer, step (not the RNG streams)."""
        return {
            "step": self.step,
            "transformer": self.transformer.state_dict(),
            "text_encoder": self.text_encoder.state_dict(),
            "ema_transformer": self.ema_transformer.shadow.state_dict(),
            "ema_text_encoder": self.ema_text_encoder.shadow.state_dict(),
            "ema_updates": self.ema_transformer.updates,
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Resume from `state_dict()`; the data and noise streams restart from a seed mixed with the step."""
        self.transformer.load_state_dict(state["transformer"])  # type: ignore[arg-type]
        self.text_encoder.load_state_dict(state["text_encoder"])  # type: ignore[arg-type]
        self.ema_transformer.shadow.load_state_dict(state["ema_transformer"])  # type: ignore[arg-type]
        self.ema_text_encoder.shadow.load_state_dict(state["ema_text_encoder"])  # type: ignore[arg-type]
        self.ema_transformer.updates = self.ema_text_encoder.updates = int(state["ema_updates"])  # type: ignore[call-overload]
        self.optimizer.load_state_dict(state["optimizer"])  # type: ignore[arg-type]
        self.step = int(state["step"])  # type: ignore[call-overload]
        self.generator.manual_seed(self.seed + self.step)
        self.rng = np.random.default_rng([self.seed, self.step])
