"""The trained model's parts, in the formats stock diffusers loads with `WanPipeline.from_pretrained`.

A word-level tokenizer built from the captions' vocabulary (saved as `tokenizer.json`, so nothing is
downloaded), a small `UMT5EncoderModel`, an `AutoencoderKLWan`, a `WanTransformer3DModel` and the
flow-match Euler scheduler.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan, WanCausalConv3d, WanResample
from diffusers.models.transformers.transformer_wan import WanTransformer3DModel
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

from model.training.data import vocabulary

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
# A transformer token covers 16x16 pixels whatever the VAE's compression: the token count stays the same.
TOKEN_PIXELS = 16


@dataclass(frozen=True, slots=True)
class ModelSizes:
    """Sizes of the three networks (the defaults are the shipped model's)."""

    vae_base_dim: int = 16
    vae_z_dim: int = 16
    # Spatial compression: 4 (two stages) or 8 (three, as Wan 2.1's VAE and the shipped checkpoint's).
    vae_spatial: int = 4
    text_dim: int = 128
    text_layers: int = 2
    text_heads: int = 4
    dim: int = 192  # transformer width: heads x head_dim
    head_dim: int = 32
    layers: int = 6
    ffn_dim: int = 768
    shift: float = 2.0  # the scheduler's timestep shift; training samples noise levels the same way

    def as_dict(self) -> dict[str, float | int]:
        """The sizes as plain JSON values."""
        return asdict(self)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over the caption vocabulary: lower-cased, punctuation dropped, `</s>` appended.

    Words outside the vocabulary become `<unk>`, so any prompt tokenizes; only the captions' words mean
    anything to the model.
    """
    words = [PAD, EOS, UNK, *vocabulary()]
    tokenizer = Tokenizer(models.WordLevel({word: i for i, word in enumerate(words)}, unk_token=UNK))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Lowercase(), normalizers.Replace(Regex(r"[^a-z0-9 ]"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token=PAD, eos_token=EOS, unk_token=UNK, model_max_length=512
    )


def build_text_encoder(sizes: ModelSizes, vocab_size: int) -> UMT5EncoderModel:
    """A small UMT5 encoder (random weights) for a vocabulary of `vocab_size` words."""
    return UMT5EncoderModel(
        UMT5Config(
            vocab_size=vocab_size,
            d_model=sizes.text_dim,
            d_kv=sizes.text_dim // sizes.text_heads,
            d_ff=sizes.text_dim * 2,
            num_layers=sizes.text_layers,
            num_heads=sizes.text_heads,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=32,
            dropout_rate=0.0,
            pad_token_id=0,
            eos_token_id=1,
        )
    )


def build_vae(sizes: ModelSizes) -> AutoencoderKLWan:
    """A small Wan VAE: `sizes.vae_spatial` (4 or 8) times in space, 4x in time.

    8x is Wan 2.1's layout (three stages, the last two also in time), but at 64x64 it leaves an 8x8
    latent from which a decoder this small cannot redraw a star's points or a triangle's corners
    (`bench/README.md`, adherence); 4x is two stages, both also in time. Wan pipelines read the factors
    from the config (`scale_factor_spatial`), as they do for Wan 2.2's 16x VAE.
    Its temporal convolutions start as copies of the current frame (see `init_time_convs_as_copies`).
    """
    if sizes.vae_spatial not in (4, 8):
        raise ValueError(f"vae_spatial must be 4 or 8, not {sizes.vae_spatial}")
    layout = (
        {"dim_mult": [1, 2, 2], "temperal_downsample": [True, True]}
        if sizes.vae_spatial == 4
        else {"dim_mult": [1, 2, 2, 2], "temperal_downsample": [False, True, True]}
    )
    vae = AutoencoderKLWan(
        base_dim=sizes.vae_base_dim,
        z_dim=sizes.vae_z_dim,
        num_res_blocks=1,
        scale_factor_spatial=sizes.vae_spatial,
        **layout,
        # Replaced by the measured statistics of the trained encoder's latents before saving.
        latents_mean=[0.0] * sizes.vae_z_dim,
        latents_std=[1.0] * sizes.vae_z_dim,
    )
    init_time_convs_as_copies(vae)
    return vae


@torch.no_grad()
def init_time_convs_as_copies(vae: AutoencoderKLWan) -> None:
    """Start every convolution over time as a copy of the current frame.

    Training on single frames never trains the taps that see earlier frames (a first frame sees zero
    padding there), nor the temporal down/upsampling (a first frame skips it), so from random weights
    a clip's later frames decode as noise. With the earlier taps at zero and the resampling copying
    the newest frame, a VAE trained on frames codes a clip frame by frame, with each group of four
    frames held at its last one: close, and the clip stage only has to learn the motion.
    """
    for module in vae.modules():
        if isinstance(module, WanCausalConv3d) and module.kernel_size[0] == 3 and module.stride[0] == 1:
            # Only the newest frame's tap: a clip is first coded frame by frame, as single frames train it.
            module.weight[:, :, :-1] = 0
            module.weight[:, :, -1] *= 3**0.5  # the variance the three taps had
    for module in vae.modules():
        if isinstance(module, WanResample) and hasattr(module, "time_conv"):
            conv = module.time_conv
            out_channels, in_channels = conv.weight.shape[:2]
            conv.weight.zero_()
            if conv.bias is not None:
                conv.bias.zero_()
            # The last tap of the (3, 1, 1) kernel is the newest frame; upsampling makes two frames of it.
            for start in range(0, out_channels, in_channels):
                conv.weight[start : start + in_channels, :, -1, 0, 0] = torch.eye(in_channels)


def build_transformer(sizes: ModelSizes) -> WanTransformer3DModel:
    """A small Wan transformer over the VAE's latents, cross-attending to the text encoder's output."""
    return WanTransformer3DModel(
        patch_size=(1, TOKEN_PIXELS // sizes.vae_spatial, TOKEN_PIXELS // sizes.vae_spatial),
        num_attention_heads=sizes.dim // sizes.head_dim,
        attention_head_dim=sizes.head_dim,
        in_channels=sizes.vae_z_dim,
        out_channels=sizes.vae_z_dim,
        text_dim=sizes.text_dim,
        freq_dim=256,
        ffn_dim=sizes.ffn_dim,
        num_layers=sizes.layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=1024,
    )


def build_scheduler(sizes: ModelSizes) -> FlowMatchEulerDiscreteScheduler:
    """The flow-match Euler scheduler with the shift the transformer was trained for."""
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=sizes.shift)
