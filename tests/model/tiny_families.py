"""Tiny random-weight checkpoints of the model zoo's families, saved like a downloaded one (diffusers' tests).

Each builder writes a diffusers pipeline directory (`model_index.json` + safetensors) that loads offline:
the byte-level `ByT5Tokenizer` needs no vocabulary file, and every model is a few thousand parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.autoencoders.autoencoder_kl_hunyuan_video import AutoencoderKLHunyuanVideo
from diffusers.models.autoencoders.autoencoder_kl_mochi import AutoencoderKLMochi
from diffusers.models.transformers.transformer_hunyuan_video import HunyuanVideoTransformer3DModel
from diffusers.models.transformers.transformer_mochi import MochiTransformer3DModel
from diffusers.models.unets.unet_3d_condition import UNet3DConditionModel
from diffusers.pipelines.deprecated.text_to_video_synthesis.pipeline_text_to_video_synth import (
    TextToVideoSDPipeline,
)
from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import HunyuanVideoPipeline
from diffusers.pipelines.mochi.pipeline_mochi import MochiPipeline
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
from transformers import (
    ByT5Tokenizer,
    CLIPTextConfig,
    CLIPTextModel,
    LlamaConfig,
    LlamaModel,
    T5Config,
    T5EncoderModel,
)


def tiny_mochi() -> MochiPipeline:
    """Mochi: T5 text encoder, asymmetric DiT, a VAE that compresses time 6x (6k+1 frames)."""
    tokenizer = ByT5Tokenizer()
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=tokenizer.vocab_size + 10,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
        )
    )
    transformer = MochiTransformer3DModel(
        patch_size=2,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=2,
        pooled_projection_dim=16,
        in_channels=12,
        out_channels=None,
        qk_norm="rms_norm",
        text_embed_dim=32,
        time_embed_dim=4,
        activation_fn="swiglu",
        max_sequence_length=256,  # the pipeline's default prompt length
    )
    # 32 channels: the smallest its GroupNorm(32) accepts.
    vae = AutoencoderKLMochi(
        latent_channels=12,
        out_channels=3,
        encoder_block_out_channels=(32, 32, 32, 32),
        decoder_block_out_channels=(32, 32, 32, 32),
        layers_per_block=(1, 1, 1, 1, 1),
    )
    return MochiPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,  # a byte-level tokenizer: no vocabulary file to download
        transformer=transformer,
    )


def tiny_modelscope() -> TextToVideoSDPipeline:
    """ModelScope text to video: CLIP text encoder, a 3D UNet, an image VAE (8x) applied per frame."""
    tokenizer = ByT5Tokenizer(model_max_length=77)  # the pipeline pads prompts to this length
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=tokenizer.vocab_size + 10,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            projection_dim=16,
            bos_token_id=0,
            eos_token_id=2,  # the legacy value: pool at the highest token id (see `tiny_hunyuan`)
        )
    )
    unet = UNet3DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    # Four blocks: the 8x spatial factor of the real VAE (the pipeline derives it from the block count).
    vae = AutoencoderKL(
        block_out_channels=[4, 4, 4, 4],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        norm_num_groups=2,
        sample_size=64,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False
    )
    return TextToVideoSDPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,  # type: ignore[arg-type]  # hinted as CLIPTokenizer; any tokenizer works
        unet=unet,
        scheduler=scheduler,
    )


def tiny_hunyuan() -> HunyuanVideoPipeline:
    """HunyuanVideo: Llama and CLIP text encoders, a dual-stream DiT, a causal VAE (4x time, 8x space)."""
    tokenizer = ByT5Tokenizer()
    text_encoder = LlamaModel(
        LlamaConfig(
            vocab_size=tokenizer.vocab_size + 10,
            hidden_size=16,
            intermediate_size=32,
            num_attention_heads=4,
            num_hidden_layers=2,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    tokenizer_2 = ByT5Tokenizer(model_max_length=77)  # CLIP's prompt length
    text_encoder_2 = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=tokenizer.vocab_size + 10,
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            projection_dim=8,
            # 2 (the legacy value): pool at the highest token id, which works with any tokenizer.
            bos_token_id=0,
            eos_token_id=2,
        )
    )
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=10,
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        patch_size=2,  # the real model's: sizes on a 16 px grid
        patch_size_t=1,
        guidance_embeds=True,
        text_embed_dim=16,
        pooled_projection_dim=8,
        rope_axes_dim=(2, 4, 4),
    )
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        norm_num_groups=4,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        mid_block_add_attention=True,
    )
    return HunyuanVideoPipeline(
        text_encoder=text_encoder,
        tokenizer=tokenizer,  # type: ignore[arg-type]  # hinted as LlamaTokenizerFast; any tokenizer works
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,  # type: ignore[arg-type]
    )


TINY_FAMILIES: dict[str, Callable[[], DiffusionPipeline]] = {
    "hunyuanvideo": tiny_hunyuan,
    "mochi": tiny_mochi,
    "modelscope": tiny_modelscope,
}


def save_tiny(family: str, path: Path, seed: int = 0) -> Path:
    """Build the tiny `family` pipeline with seeded weights and save it at `path`; returns `path`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipeline = TINY_FAMILIES[family]()
    pipeline.save_pretrained(path, safe_serialization=True)
    return path
