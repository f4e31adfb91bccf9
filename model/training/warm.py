"""Starting the flow stage from a trained pipeline whose VAE has another layout (`train.py --init-from`).

A new VAE means new latents, but not a new task: the text encoder and the transformer's blocks (which
map a prompt to where a shape of which colour is, and how it moves, token by token) carry over. Only
the two layers that touch latents differ, and they are fitted by least squares instead of starting
at random, so the fine-tune starts from a model that already samples something:

- the patch embedding: on the same clips encoded by both VAEs, the linear map from the new latents'
  patches that best reproduces the tokens the old embedding made from the old latents;
- the output projection: the best linear readout, from the last hidden states the transformer now
  computes on noisy new latents, of the velocity the flow loss asks for.

Every other weight whose shape matches is copied; one that does not is an error (a different width,
depth or vocabulary is not a warm start). A source whose VAE has this VAE's encoder (a checkpoint of
the same run, or one trained from the same VAE stage) is a continuation: every weight is copied.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan
from diffusers.models.transformers.transformer_wan import WanTransformer3DModel
from transformers import PreTrainedTokenizerBase, UMT5EncoderModel

from model.training.data import ClipConfig, recaption
from model.training.flow import LatentSet, encode_clips, encode_text, sample_sigmas

logger = logging.getLogger("kinema.train")
LATENT_LAYERS = ("patch_embedding.weight", "patch_embedding.bias", "proj_out.weight", "proj_out.bias")


@dataclass(frozen=True, slots=True)
class WarmStart:
    """What a warm start did: tensors copied, and how well each refitted layer reproduces its target
    (R², 1 is exact; None where the source's encoder is this VAE's, so nothing needed refitting)."""

    source: str
    copied: int  # tensors copied unchanged
    patch_embedding_r2: float | None
    proj_out_r2: float | None


def token_patches(latents: torch.Tensor, patch: Sequence[int]) -> torch.Tensor:
    """(B, C, F, H, W) latents as one row per transformer token, in the patch embedding's weight order.

    Rows run over batch, then frames, rows and columns of tokens (the order the transformer flattens
    its tokens in); each row is the token's (C, pt, ph, pw) values.
    """
    b, c, f, h, w = latents.shape
    pt, ph, pw = patch
    x = latents.reshape(b, c, f // pt, pt, h // ph, ph, w // pw, pw)
    return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(-1, c * pt * ph * pw)


def token_targets(latents: torch.Tensor, patch: Sequence[int]) -> torch.Tensor:
    """(B, C, F, H, W) as one row per token in the output projection's order: (pt, ph, pw, C)."""
    b, c, f, h, w = latents.shape
    pt, ph, pw = patch
    x = latents.reshape(b, c, f // pt, pt, h // ph, ph, w // pw, pw)
    return x.permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(-1, pt * ph * pw * c)


def least_squares(
    x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-3
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Weight (out, in) and bias of the ridge-regularised linear map x -> y, and its R² on (x, y)."""
    x, y = x.double(), y.double()
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ xc
    gram += ridge * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=gram.dtype)
    weight = torch.linalg.solve(gram, xc.T @ yc).T  # (out, in)
    bias = y_mean - weight @ x_mean
    residual = yc - xc @ weight.T
    r2 = 1.0 - float(residual.pow(2).sum() / yc.pow(2).sum().clamp_min(1e-12))
    return weight.float(), bias.float(), r2


def same_latent_space(old: AutoencoderKLWan, new: AutoencoderKLWan) -> bool:
    """Whether two VAEs encode alike: the same encoder weights, compared at fp16 (as checkpoints ship)."""
    old_state, new_state = old.state_dict(), new.state_dict()
    for name, tensor in old_state.items():
        if not name.startswith(("encoder.", "quant_conv.")):
            continue
        other = new_state.get(name)
        if other is None or other.shape != tensor.shape:
            return False
        if not torch.equal(other.to(tensor.device).half().float(), tensor.half().float()):
            return False
    return True


def copy_weights(old: torch.nn.Module, new: torch.nn.Module, *, skip: Sequence[str], source: Path) -> int:
    """Copy `old`'s weights into `new` but those named in `skip`; returns how many. Shapes must match."""
    target = new.state_dict()
    copied = 0
    for name, tensor in old.state_dict().items():
        if name in skip:
            continue
        if name not in target or target[name].shape != tensor.shape:
            raise ValueError(f"{source}: transformer weight {name} does not fit this model's")
        target[name].copy_(tensor)
        copied += 1
    new.load_state_dict(target)
    return copied


def normalised(latents: torch.Tensor, vae: AutoencoderKLWan) -> torch.Tensor:
    """Latents as the transformer sees them: minus the VAE config's mean, over its standard deviation."""
    mean = torch.tensor(vae.config["latents_mean"]).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config["latents_std"]).view(1, -1, 1, 1, 1)
    return (latents.float() - mean) / std


@torch.no_grad()
def warm_start(
    source: Path,
    *,
    transformer: WanTransformer3DModel,
    text_encoder: UMT5EncoderModel,
    tokenizer: PreTrainedTokenizerBase,
    vae: AutoencoderKLWan,
    data: LatentSet,
    clips: ClipConfig,
    device: torch.device,
    seed: int,
    fit_clips: int = 256,
    shift: float = 2.0,
) -> WarmStart:
    """Load `source`'s text encoder and transformer into these, refitting the latent layers if need be.

    `vae` is the new VAE, with its latent statistics set; `data` its encoded training clips, of which
    the first `fit_clips` are also encoded with `source`'s VAE to pair the two latent spaces.
    """
    old_transformer = WanTransformer3DModel.from_pretrained(source / "transformer", dtype=torch.float32)
    old_text = UMT5EncoderModel.from_pretrained(source / "text_encoder", dtype=torch.float32)
    old_vae = AutoencoderKLWan.from_pretrained(source / "vae", dtype=torch.float32).to(device).eval()

    text_encoder.load_state_dict(old_text.state_dict())  # a different vocabulary or size fails here
    same = same_latent_space(old_vae, vae)
    copied = len(old_text.state_dict()) + copy_weights(
        old_transformer, transformer, skip=() if same else LATENT_LAYERS, source=source
    )
    if same:  # a continuation: the latents the source learnt are these
        logger.info("warm start from %s: same encoder, %d tensors copied", source, copied)
        return WarmStart(str(source), copied, None, None)

    count = min(fit_clips, len(data.seeds))
    old = encode_clips(old_vae, data.seeds[:count], clips, device, batch=16).latents
    old_tokens = old_transformer.to(device).patch_embedding(normalised(old, old_vae).to(device))
    old_tokens = old_tokens.flatten(2).transpose(1, 2).reshape(-1, old_tokens.shape[1])
    new_patch = transformer.config["patch_size"]
    weight, bias, embed_r2 = least_squares(
        token_patches(normalised(data.latents[:count], vae), new_patch), old_tokens.cpu()
    )
    embedding = transformer.patch_embedding
    embedding.weight.copy_(weight.reshape(embedding.weight.shape))
    assert embedding.bias is not None  # Wan's patch embedding has one
    embedding.bias.copy_(bias)

    # The readout: hidden states entering proj_out on noisy latents, against the velocity to predict.
    features: list[torch.Tensor] = []
    hook = transformer.proj_out.register_forward_hook(lambda _m, args, _out: features.append(args[0].cpu()))
    generator = torch.Generator("cpu").manual_seed(seed)
    targets = []
    torch.nn.Module.to(transformer, device).eval()
    torch.nn.Module.to(text_encoder, device).eval()
    try:
        for start in range(0, count, 32):
            x0 = normalised(data.latents[start : start + 32], vae)
            noise = torch.randn(x0.shape, generator=generator)
            sigma = sample_sigmas(generator, len(x0), shift)
            s = sigma.view(-1, 1, 1, 1, 1)
            captions = [recaption(data.plans[i], data.seeds[i], i) for i in range(start, start + len(x0))]
            context, _ = encode_text(tokenizer, text_encoder, captions, device)
            noisy = ((1 - s) * x0 + s * noise).to(device)
            transformer(noisy, (sigma * 1000).to(device), context, return_dict=False)
            targets.append(token_targets(noise - x0, new_patch))
    finally:
        hook.remove()
    hidden = torch.cat(features).reshape(-1, features[0].shape[-1])
    weight, bias, out_r2 = least_squares(hidden, torch.cat(targets))
    transformer.proj_out.weight.copy_(weight)
    transformer.proj_out.bias.copy_(bias)
    logger.info(
        "warm start from %s: %d tensors copied; patch embedding R² %.3f, output projection R² %.3f",
        source,
        copied,
        embed_r2,
        out_r2,
    )
    return WarmStart(str(source), copied, embed_r2, out_r2)
