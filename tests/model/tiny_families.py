"""Tiny random-weight checkpoints of the model zoo's families, saved like a downloaded one (diffusers' tests).

Each builder writes a diffusers pipeline directory (`model_index.json` + safetensors) that loads offline:
the byte-level `ByT5Tokenizer` needs no vocabulary file, and every model is a few thousand parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.autoencoders.autoencoder_kl_cogvideox import AutoencoderKLCogVideoX
from diffusers.models.autoencoders.autoencoder_kl_hunyuan_video import AutoencoderKLHunyuanVideo
from diffusers.models.autoencoders.autoencoder_kl_ltx import AutoencoderKLLTXVideo
from diffusers.models.autoencoders.autoencoder_kl_mochi import AutoencoderKLMochi
from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXTransformer3DModel
from diffusers.models.transformers.transformer_hunyuan_video import HunyuanVideoTransformer3DModel
from diffusers.models.transformers.transformer_ltx import LTXVideoTransformer3DModel
from diffusers.models.transformers.transformer_mochi import MochiTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanTransformer3DModel
from diffusers.models.transformers.transformer_wan_vace import WanVACETransformer3DModel
from diffusers.models.unets.unet_3d_condition import UNet3DConditionModel
from diffusers.pipelines.cogvideo.pipeline_cogvideox import CogVideoXPipeline
from diffusers.pipelines.cogvideo.pipeline_cogvideox_image2video import CogVideoXImageToVideoPipeline
from diffusers.pipelines.cogvideo.pipeline_cogvideox_video2video import CogVideoXVideoToVideoPipeline
from diffusers.pipelines.deprecated.text_to_video_synthesis.pipeline_text_to_video_synth import (
    TextToVideoSDPipeline,
)
from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import HunyuanVideoPipeline
from diffusers.pipelines.ltx.pipeline_ltx import LTXPipeline
from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXConditionPipeline
from diffusers.pipelines.ltx.pipeline_ltx_image2video import LTXImageToVideoPipeline
from diffusers.pipelines.mochi.pipeline_mochi import MochiPipeline
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.pipelines.wan.pipeline_wan import WanPipeline
from diffusers.pipelines.wan.pipeline_wan_i2v import WanImageToVideoPipeline
from diffusers.pipelines.wan.pipeline_wan_vace import WanVACEPipeline
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from diffusers.schedulers.scheduling_ddim_cogvideox import CogVideoXDDIMScheduler
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
from transformers import (
    ByT5Tokenizer,
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaModel,
    T5Config,
    T5EncoderModel,
    UMT5Config,
    UMT5EncoderModel,
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


def _t5(tokenizer: ByT5Tokenizer, d_model: int = 32) -> T5EncoderModel:
    """A two-layer T5 encoder over the byte-level tokenizer's ids (LTX, CogVideoX)."""
    return T5EncoderModel(
        T5Config(
            vocab_size=tokenizer.vocab_size + 10,
            d_model=d_model,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
        )
    )


def _umt5(tokenizer: ByT5Tokenizer) -> UMT5EncoderModel:
    """A two-layer UMT5 encoder, as the built-in tiny Wan has (Wan's text encoder)."""
    return UMT5EncoderModel(
        UMT5Config(
            vocab_size=tokenizer.vocab_size + 10,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
        )
    )


def _wan_vae() -> AutoencoderKLWan:
    """Wan's VAE at its real compression (8x space, 4x time) with the fewest channels and blocks."""
    return AutoencoderKLWan(
        base_dim=4, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=0, temperal_downsample=[False, True, True]
    )


def _wan_transformer(
    in_channels: int, image_dim: int | None = None, out_channels: int = 16
) -> WanTransformer3DModel:
    """A two-layer Wan DiT; 36 input channels for image to video (noise, the image's latents, a mask)."""
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=in_channels,
        out_channels=out_channels,
        text_dim=32,
        freq_dim=256,
        ffn_dim=64,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        image_dim=image_dim,
        rope_max_seq_len=1024,
    )


def tiny_wan_i2v() -> WanImageToVideoPipeline:
    """Wan 2.1 image to video: the first frame goes in as latents and as CLIP vision features."""
    tokenizer = ByT5Tokenizer()
    image_encoder = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
            projection_dim=8,
        )
    )
    return WanImageToVideoPipeline(
        tokenizer=tokenizer,  # type: ignore[arg-type]  # hinted as AutoTokenizer; any tokenizer works
        text_encoder=_umt5(tokenizer),
        vae=_wan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
        image_processor=CLIPImageProcessor(crop_size=32, size=32),
        image_encoder=image_encoder,
        transformer=_wan_transformer(in_channels=36, image_dim=8),
    )


def tiny_wan22_i2v() -> WanImageToVideoPipeline:
    """Wan 2.2 (A14B) image to video: no image encoder; a high-noise and a low-noise expert."""
    tokenizer = ByT5Tokenizer()
    return WanImageToVideoPipeline(
        tokenizer=tokenizer,  # type: ignore[arg-type]
        text_encoder=_umt5(tokenizer),
        vae=_wan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
        transformer=_wan_transformer(in_channels=36),
        transformer_2=_wan_transformer(in_channels=36),
        boundary_ratio=0.9,
    )


def tiny_wan22_t2v() -> WanPipeline:
    """Wan 2.2 (A14B) text to video: a high-noise and a low-noise expert split at `boundary_ratio`.

    The real model's 0.875 would do as well: any schedule of 2 steps or more starts at timestep 1000
    and ends near 0 (shift 5, 4 steps: 1000 and 910 on the high-noise expert, 717 and 24 on the
    low-noise one), so even a short job runs both.
    """
    tokenizer = ByT5Tokenizer()
    return WanPipeline(
        tokenizer=tokenizer,  # type: ignore[arg-type]
        text_encoder=_umt5(tokenizer),
        vae=_wan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
        transformer=_wan_transformer(in_channels=16),
        transformer_2=_wan_transformer(in_channels=16),
        boundary_ratio=0.875,
    )


def tiny_wan22_ti2v() -> WanPipeline:
    """Wan 2.2 TI2V-5B: a `WanPipeline` whose VAE compresses space 16x (8x, then 2x2 patches of pixels).

    Its 48 latent channels and `scale_factor_spatial=16` are the real model's, so with the transformer's
    patch 2 sizes are on a 32 px grid; `expand_timesteps` gives each token its own timestep.
    """
    tokenizer = ByT5Tokenizer()
    vae = AutoencoderKLWan(
        base_dim=4,
        z_dim=48,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=0,
        temperal_downsample=[False, True, True],
        is_residual=True,
        in_channels=12,  # RGB in 2x2 patches
        out_channels=12,
        patch_size=2,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
        latents_mean=[0.0] * 48,
        latents_std=[1.0] * 48,
    )
    return WanPipeline(
        tokenizer=tokenizer,  # type: ignore[arg-type]
        text_encoder=_umt5(tokenizer),
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
        transformer=_wan_transformer(in_channels=48, out_channels=48),
        expand_timesteps=True,
    )


def tiny_wan_vace() -> WanVACEPipeline:
    """Wan VACE: a Wan DiT with control blocks reading a reference video and mask (96 channels)."""
    tokenizer = ByT5Tokenizer()
    transformer = WanVACETransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=16,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=64,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=1024,
        vace_layers=[0],
        vace_in_channels=96,
    )
    return WanVACEPipeline(
        tokenizer=tokenizer,  # type: ignore[arg-type]
        text_encoder=_umt5(tokenizer),
        vae=_wan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
        transformer=transformer,
    )


def _ltx_components() -> dict[str, object]:
    """LTX-Video's parts: T5, a patch-1 DiT, a VAE at the real 32x space and 8x time compression."""
    tokenizer = ByT5Tokenizer()
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=16,
        cross_attention_dim=32,
        num_layers=2,
        caption_channels=32,
    )
    # Patch 4 and three down blocks that scale space and time: 4 * 2^3 = 32x, 2^3 = 8x.
    vae = AutoencoderKLLTXVideo(
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True, False),
        patch_size=4,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    return {
        "scheduler": FlowMatchEulerDiscreteScheduler(),
        "vae": vae,
        "text_encoder": _t5(tokenizer),
        "tokenizer": tokenizer,  # hinted as T5TokenizerFast; any tokenizer works
        "transformer": transformer,
    }


def tiny_ltx() -> LTXPipeline:
    """LTX-Video text to video (8k+1 frames on a 32 px grid)."""
    return LTXPipeline(**_ltx_components())  # type: ignore[arg-type]


def tiny_ltx_i2v() -> LTXImageToVideoPipeline:
    """LTX-Video image to video: the first latent frame is the image's, held through denoising."""
    return LTXImageToVideoPipeline(**_ltx_components())  # type: ignore[arg-type]


def tiny_ltx_condition() -> LTXConditionPipeline:
    """LTX-Video 0.9.5+ conditioning pipeline (images or videos at any frame index; here, none)."""
    return LTXConditionPipeline(**_ltx_components())  # type: ignore[arg-type]


def _cogvideox_components(in_channels: int, learned_positions: bool = False) -> dict[str, object]:
    """CogVideoX's parts: T5, a patch-2 DiT with 3D RoPE, a VAE at 8x space and 4x time."""
    tokenizer = ByT5Tokenizer()
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,  # RoPE splits the head over time, height and width: a multiple of 16
        in_channels=in_channels,
        out_channels=4,
        time_embed_dim=4,
        text_embed_dim=32,
        num_layers=2,
        # Latent pixels: 80x64 px, the one size learned positional embeddings allow (the API's sides are
        # at least 64 px, so a job can ask for it).
        sample_width=10,
        sample_height=8,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=226,  # the pipeline's default prompt length
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=learned_positions,
    )
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    return {
        "tokenizer": tokenizer,  # hinted as T5Tokenizer; any tokenizer works
        "text_encoder": _t5(tokenizer),
        "vae": vae,
        "transformer": transformer,
        "scheduler": CogVideoXDDIMScheduler(timestep_spacing="trailing"),
    }


def tiny_cogvideox() -> CogVideoXPipeline:
    """CogVideoX text to video."""
    return CogVideoXPipeline(**_cogvideox_components(in_channels=4))  # type: ignore[arg-type]


def tiny_cogvideox_i2v() -> CogVideoXImageToVideoPipeline:
    """CogVideoX image to video: the image's latents are concatenated to the noise (twice the channels)."""
    return CogVideoXImageToVideoPipeline(**_cogvideox_components(in_channels=8))  # type: ignore[arg-type]


def tiny_cogvideox_v2v() -> CogVideoXVideoToVideoPipeline:
    """CogVideoX video to video: the text-to-video model started from a source's re-noised latents."""
    return CogVideoXVideoToVideoPipeline(**_cogvideox_components(in_channels=4))  # type: ignore[arg-type]


def tiny_cogvideox_5b_i2v() -> CogVideoXImageToVideoPipeline:
    """CogVideoX-5b-I2V (1.0): learned positional embeddings, so one size only (its sample size)."""
    components = _cogvideox_components(in_channels=8, learned_positions=True)
    return CogVideoXImageToVideoPipeline(**components)  # type: ignore[arg-type]


TINY_FAMILIES: dict[str, Callable[[], DiffusionPipeline]] = {
    "hunyuanvideo": tiny_hunyuan,
    "mochi": tiny_mochi,
    "modelscope": tiny_modelscope,
    "wan-i2v": tiny_wan_i2v,
    "wan2.2-i2v": tiny_wan22_i2v,
    "wan2.2-t2v": tiny_wan22_t2v,
    "wan2.2-ti2v": tiny_wan22_ti2v,
    "wan-vace": tiny_wan_vace,
    "ltx": tiny_ltx,
    "ltx-i2v": tiny_ltx_i2v,
    "ltx-condition": tiny_ltx_condition,
    "cogvideox": tiny_cogvideox,
    "cogvideox-i2v": tiny_cogvideox_i2v,
    "cogvideox-v2v": tiny_cogvideox_v2v,
    "cogvideox-5b-i2v": tiny_cogvideox_5b_i2v,
}


def save_tiny(family: str, path: Path, seed: int = 0) -> Path:
    """Build the tiny `family` pipeline with seeded weights and save it at `path`; returns `path`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipeline = TINY_FAMILIES[family]()
    pipeline.save_pretrained(path, safe_serialization=True)
    return path
