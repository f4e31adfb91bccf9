"""A video's soundtrack: a diffusers text-to-audio pipeline run from the prompt for the video's length.

Two pipeline formats load from a local directory, told apart by its `model_index.json` `_class_name`:
`StableAudioPipeline` (Stable Audio Open: 44.1 kHz stereo, at most `max_duration_s` a pass, so a longer
clip is made of passes joined with crossfades) and `AudioLDM2Pipeline` (AudioLDM 2: 16 kHz mono, any
length in one pass). `builtin:tiny-stable-audio` and `builtin:tiny-audioldm2` are small random-weight
pipelines of each format, built on first use like `builtin:tiny-wan`: their sound is noise (or near
silence), for tests and try-outs.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import torch

# Concrete module paths: mypy cannot see through diffusers' lazy top-level exports.
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.autoencoders.autoencoder_oobleck import AutoencoderOobleck
from diffusers.models.transformers.stable_audio_transformer import StableAudioDiTModel
from diffusers.pipelines.audioldm2.modeling_audioldm2 import (
    AudioLDM2ProjectionModel,
    AudioLDM2UNet2DConditionModel,
)
from diffusers.pipelines.audioldm2.pipeline_audioldm2 import AudioLDM2Pipeline
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.pipelines.stable_audio.modeling_stable_audio import StableAudioProjectionModel
from diffusers.pipelines.stable_audio.pipeline_stable_audio import StableAudioPipeline
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from diffusers.schedulers.scheduling_edm_dpmsolver_multistep import EDMDPMSolverMultistepScheduler
from packaging.version import Version
from transformers import (
    ClapAudioConfig,
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    ClapTextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    RobertaTokenizer,
    SpeechT5HifiGan,
    SpeechT5HifiGanConfig,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

from model.config import GenerationCanceled, ModelError, Phase, StepInfo
from model.export import AudioClip
from model.pipeline import save_built_pipeline

logger = logging.getLogger(__name__)

BUILTIN_TINY_STABLE_AUDIO = "builtin:tiny-stable-audio"
BUILTIN_TINY_AUDIOLDM2 = "builtin:tiny-audioldm2"
# Bump a suffix whenever its builder changes, so old caches are not reused.
_BUILTIN_DIRS = {
    BUILTIN_TINY_STABLE_AUDIO: "tiny-stable-audio-v1",
    BUILTIN_TINY_AUDIOLDM2: "tiny-audioldm2-v1",
}
TINY_AUDIO_SEED = 20240301
TINY_AUDIO_STEPS = 4
# The tiny Stable Audio's longest pass (its DiT's sample_size x the VAE's 2048x hop at 44.1 kHz).
TINY_STABLE_AUDIO_WINDOW_S = 10.0

# Each format's steps and guidance when the deployment sets none (the model cards' recommendations).
_DEFAULTS: dict[str, tuple[int, float]] = {
    "StableAudioPipeline": (100, 7.0),
    "AudioLDM2Pipeline": (200, 3.5),
}
AUDIO_PIPELINES = tuple(_DEFAULTS)
# Passes of a clip longer than one pass overlap by this much and are crossfaded there.
CROSSFADE_S = 0.5

_DTYPE_KWARG = "dtype" if Version(diffusers.__version__) >= Version("0.42") else "torch_dtype"

StepCallback = Callable[[StepInfo], None]
StopCheck = Callable[[], bool]


@dataclass(frozen=True, slots=True)
class AudioRequest:
    """One soundtrack: `duration_s` seconds of sound for `prompt`, from `seed` (the job's)."""

    prompt: str
    duration_s: float
    seed: int
    # None: the model's default (4 for the tiny built-ins; 100 for Stable Audio, 200 for AudioLDM 2).
    num_inference_steps: int | None = None


@dataclass(slots=True)
class LoadedAudioModel:
    """An audio pipeline ready to run, and what it makes: rate, channels, the longest single pass."""

    pipe: DiffusionPipeline
    model_id: str
    pipeline_class: str
    device: torch.device
    dtype: torch.dtype
    sample_rate: int
    channels: int
    # The longest clip one pass makes; None when any length fits in one pass.
    max_duration_s: float | None
    default_steps: int
    guidance_scale: float


_loaded: dict[tuple[str, Path], LoadedAudioModel] = {}
_loaded_lock = threading.Lock()


def get_audio_model(model_id: str, cache_dir: Path) -> LoadedAudioModel:
    """Load `model_id` once per process (per cache dir); later calls return the same pipeline."""
    key = (model_id, Path(cache_dir))
    with _loaded_lock:
        if key not in _loaded:
            _loaded[key] = load_audio_pipeline(model_id, cache_dir=key[1])
        return _loaded[key]


def load_audio_pipeline(
    model_id: str,
    *,
    cache_dir: Path,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> LoadedAudioModel:
    """Load the audio pipeline `model_id` (a built-in id or a local diffusers directory) onto `device`.

    The device defaults to CUDA when present (float16, as the model cards run them), else the CPU
    (float32). A built-in is built into `cache_dir` on first use, then loaded from disk like any other
    directory. Raises `ModelError` for an unknown id, another pipeline class, or a directory that fails
    to load.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    if model_id in _BUILTIN_DIRS:
        weights = Path(cache_dir).expanduser() / _BUILTIN_DIRS[model_id]
        try:
            build_tiny_audio(model_id, weights)
        except OSError as exc:
            raise ModelError(f"could not build {model_id!r} in {weights}: {exc}") from exc
    else:
        weights = Path(model_id).expanduser()
    pipeline_class = audio_pipeline_class(weights, model_id)
    pipe_type: Any = StableAudioPipeline if pipeline_class == "StableAudioPipeline" else AudioLDM2Pipeline
    try:
        pipe = pipe_type.from_pretrained(weights, local_files_only=True, **{_DTYPE_KWARG: dtype})
        pipe.to(device)
    except Exception as exc:
        hint = "" if importlib.util.find_spec("accelerate") else " (is the `accelerate` package installed?)"
        raise ModelError(f"could not load {pipeline_class} {model_id!r} from {weights}: {exc}{hint}") from exc
    pipe.set_progress_bar_config(disable=True)
    steps, guidance = _DEFAULTS[pipeline_class]
    if model_id in _BUILTIN_DIRS:
        steps = TINY_AUDIO_STEPS
    loaded = LoadedAudioModel(
        pipe=pipe,
        model_id=model_id,
        pipeline_class=pipeline_class,
        device=device,
        dtype=dtype,
        default_steps=steps,
        guidance_scale=guidance,
        **_format_facts(pipe, pipeline_class),
    )
    logger.info(
        "loaded audio %s (%s, %d Hz, %d channels) on %s as %s",
        model_id,
        pipeline_class,
        loaded.sample_rate,
        loaded.channels,
        device,
        dtype,
    )
    return loaded


def audio_pipeline_class(path: Path, model_id: str) -> str:
    """The pipeline class a diffusers directory holds (`model_index.json`), one of AUDIO_PIPELINES."""
    index = Path(path) / "model_index.json"
    if not index.is_file():
        raise ModelError(
            f"audio model {model_id!r} is not a built-in ({', '.join(_BUILTIN_DIRS)}) or a diffusers "
            "pipeline directory"
        )
    try:
        name = str(json.loads(index.read_text()).get("_class_name", ""))
    except (OSError, ValueError) as exc:
        raise ModelError(f"could not read {index}: {exc}") from exc
    if name not in AUDIO_PIPELINES:
        raise ModelError(f"audio model {model_id!r} is a {name!r}; supported: {', '.join(AUDIO_PIPELINES)}")
    return name


def _format_facts(pipe: Any, pipeline_class: str) -> dict[str, Any]:
    """Sample rate, channels and longest pass, read from the loaded components' configs."""
    if pipeline_class == "StableAudioPipeline":
        vae = pipe.vae.config
        window = pipe.transformer.config.sample_size * pipe.vae.hop_length / vae.sampling_rate
        # The duration conditioning also caps a pass (seconds beyond it are clamped, not made).
        window = min(window, float(pipe.projection_model.config.max_value))
        return {
            "sample_rate": int(vae.sampling_rate),
            "channels": int(vae.audio_channels),
            "max_duration_s": window,
        }
    return {"sample_rate": int(pipe.vocoder.config.sampling_rate), "channels": 1, "max_duration_s": None}


def generate_audio(
    request: AudioRequest,
    on_step: StepCallback | None = None,
    should_stop: StopCheck | None = None,
    *,
    model: LoadedAudioModel,
) -> AudioClip:
    """Exactly `round(duration_s x sample_rate)` samples of sound for the prompt, the same for the same
    request.

    A clip longer than one pass of the model is made of passes (seeds `seed`, `seed + 1`, ...) that
    overlap by CROSSFADE_S and are crossfaded. `on_step` hears every denoising step as `Phase.AUDIO`
    (counted over all passes); when `should_stop()` answers True (before each pass and after each step)
    `GenerationCanceled` is raised. Samples are clipped to [-1, 1]. Raises `ModelError` for a request
    the pipeline refuses.
    """
    if request.duration_s <= 0:
        raise ModelError(f"audio duration must be positive; got {request.duration_s}")
    steps = request.num_inference_steps or model.default_steps
    if steps < 1:
        raise ModelError(f"audio num_inference_steps must be at least 1; got {steps}")
    rate = model.sample_rate
    total = round(request.duration_s * rate)
    passes = pass_lengths(total, _window_samples(model), round(CROSSFADE_S * rate))
    done = 0

    def on_pass_step(_index: int, _timestep: Any, _latents: Any) -> None:
        nonlocal done
        done += 1
        if on_step is not None:
            on_step(StepInfo(Phase.AUDIO, min(done, steps * len(passes)), steps * len(passes)))
        if should_stop is not None and should_stop():
            raise GenerationCanceled  # the only way out of the pipeline's loop

    clip: np.ndarray | None = None
    for index, length in enumerate(passes):
        if should_stop is not None and should_stop():
            raise GenerationCanceled
        made = _run_pass(model, request.prompt, length, (request.seed + index) % 2**32, steps, on_pass_step)
        clip = made if clip is None else crossfade(clip, made, round(CROSSFADE_S * rate))
    assert clip is not None  # at least one pass
    if model.device.type == "cuda":
        torch.cuda.empty_cache()
    return AudioClip(_fit(clip, total), rate)


def _window_samples(model: LoadedAudioModel) -> int | None:
    if model.max_duration_s is None:
        return None
    return int(model.max_duration_s * model.sample_rate)


def pass_lengths(total: int, window: int | None, overlap: int) -> list[int]:
    """The sample counts of the passes that make `total` samples, at most `window` each (None: no
    limit), consecutive passes overlapping by `overlap` (less when the window is short)."""
    if window is None or total <= window:
        return [total]
    overlap = min(overlap, window // 4)
    lengths = [window]
    made = window
    while made < total:
        length = min(window, total - made + overlap)
        lengths.append(length)
        made += length - overlap
    return lengths


def crossfade(first: np.ndarray, second: np.ndarray, overlap: int) -> np.ndarray:
    """`first` then `second` (both (channels, samples)), the last `overlap` samples of `first` faded
    linearly into the first `overlap` of `second`: len(first) + len(second) - overlap samples."""
    overlap = min(overlap, first.shape[1], second.shape[1])
    if overlap == 0:
        return np.concatenate([first, second], axis=1)
    fade = np.linspace(0.0, 1.0, overlap, dtype=np.float32)
    joined = first[:, -overlap:] * (1 - fade) + second[:, :overlap] * fade
    return np.concatenate([first[:, :-overlap], joined, second[:, overlap:]], axis=1)


def _fit(samples: np.ndarray, length: int) -> np.ndarray:
    """Exactly `length` samples: cut, or padded with silence (a pipeline rounds lengths its own way)."""
    if samples.shape[1] >= length:
        return samples[:, :length]
    return np.pad(samples, ((0, 0), (0, length - samples.shape[1])))


def _run_pass(
    model: LoadedAudioModel,
    prompt: str,
    length: int,
    seed: int,
    steps: int,
    callback: Callable[[int, Any, Any], None],
) -> np.ndarray:
    """One pass of the pipeline: (channels, `length`) float32 samples in [-1, 1]."""
    pipe: Any = model.pipe
    seconds = length / model.sample_rate
    kwargs: dict[str, Any] = {
        "prompt": prompt,
        "num_inference_steps": steps,
        "guidance_scale": model.guidance_scale,
        # A CPU generator gives the same initial noise for a seed on any device.
        "generator": torch.Generator("cpu").manual_seed(seed),
        "callback": callback,
        "callback_steps": 1,
        "output_type": "np",
    }
    if model.pipeline_class == "StableAudioPipeline":
        kwargs["audio_end_in_s"] = min(seconds, model.max_duration_s or seconds)
    else:
        kwargs["audio_length_in_s"] = seconds
    try:
        with torch.inference_mode():
            audios = pipe(**kwargs).audios
    except GenerationCanceled:
        raise
    except ValueError as exc:  # the pipelines' own checks (lengths, prompts)
        raise ModelError(f"{model.model_id} cannot make {seconds:g} s of audio: {exc}") from exc
    samples = np.asarray(audios[0], dtype=np.float32)
    if samples.ndim == 1:  # AudioLDM 2: one mono waveform
        samples = samples[None, :]
    return _fit(np.clip(np.nan_to_num(samples), -1.0, 1.0), length)


def build_tiny_audio(model_id: str, path: Path) -> None:
    """Build the small random-weight audio pipeline `model_id` and save it (safetensors) at `path`.

    As `model.pipeline.build_tiny_wan`: the weights depend only on a fixed seed, and the pipeline is
    written next to `path` and renamed into place, so a concurrent reader never sees half of it.
    """
    make = _tiny_stable_audio if model_id == BUILTIN_TINY_STABLE_AUDIO else _tiny_audioldm2

    def seeded() -> DiffusionPipeline:
        with torch.random.fork_rng(devices=[]):  # seeding must not disturb the caller's RNG
            torch.manual_seed(TINY_AUDIO_SEED)
            return make()

    save_built_pipeline(Path(path), seeded)


def _t5_tokenizer(max_length: int) -> T5Tokenizer:
    """A T5 tokenizer with one piece per printable ASCII character: needs no vocabulary download."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(chr(code), -3.0) for code in range(33, 127)]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=max_length)


def _roberta_tokenizer(max_length: int) -> RobertaTokenizer:
    """A byte-level RoBERTa tokenizer with no merges (one token a byte): needs no vocabulary download."""
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    for symbol in bytes_to_unicode().values():
        vocab[symbol] = len(vocab)
    return RobertaTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def _tiny_stable_audio() -> StableAudioPipeline:
    """Stable Audio Open's architecture at toy widths: 44.1 kHz stereo, 10 s a pass; ~1 s a pass on
    2 CPU cores (most of it the VAE decoding the whole window)."""
    tokenizer = _t5_tokenizer(64)
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
        )
    )
    hop = 2 * 4 * 4 * 8 * 8  # the real VAE's 2048 samples per latent frame
    vae = AutoencoderOobleck(
        encoder_hidden_size=4,
        downsampling_ratios=[2, 4, 4, 8, 8],
        channel_multiples=[1, 2, 2, 2, 2],
        decoder_channels=4,
        decoder_input_channels=8,
        audio_channels=2,
        sampling_rate=44100,
    )
    transformer = StableAudioDiTModel(
        sample_size=int(TINY_STABLE_AUDIO_WINDOW_S * 44100 / hop) + 1,
        in_channels=8,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        num_key_value_attention_heads=1,
        out_channels=8,
        cross_attention_dim=32,
        time_proj_dim=32,
        global_states_input_dim=64,  # start and end seconds, each projected to conditioning_dim
        cross_attention_input_dim=32,
    )
    projection_model = StableAudioProjectionModel(
        text_encoder_dim=32, conditioning_dim=32, min_value=0, max_value=512
    )
    scheduler = EDMDPMSolverMultistepScheduler(
        solver_order=2, prediction_type="v_prediction", sigma_data=1.0, sigma_schedule="exponential"
    )
    return StableAudioPipeline(
        vae=vae,
        text_encoder=text_encoder,
        projection_model=projection_model,
        tokenizer=tokenizer,
        transformer=transformer,
        scheduler=scheduler,
    )


def _tiny_audioldm2() -> AudioLDM2Pipeline:
    """AudioLDM 2's architecture at toy widths: 16 kHz mono, 100 mel frames a second (the real hop)."""
    tokenizer = _roberta_tokenizer(64)
    tokenizer_2 = _t5_tokenizer(64)
    clap_text = ClapTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=8,
        intermediate_size=16,
        num_attention_heads=1,
        num_hidden_layers=1,
        max_position_embeddings=72,  # RoBERTa positions start after the padding index
        bos_token_id=0,
        pad_token_id=1,
        eos_token_id=2,
        projection_dim=8,
    )
    clap_audio = ClapAudioConfig(
        spec_size=8,
        window_size=4,
        num_mel_bins=8,
        depths=[1, 1],
        num_attention_heads=[1, 1],
        num_hidden_layers=1,
        hidden_size=16,
        projection_dim=8,
        patch_size=2,
        patch_stride=2,
        patch_embed_input_channels=4,
    )
    text_encoder = ClapModel(
        ClapConfig(text_config=clap_text.to_dict(), audio_config=clap_audio.to_dict(), projection_dim=16)
    )
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_2),
            d_model=32,
            d_ff=37,
            d_kv=8,
            num_heads=2,
            num_layers=2,
            relative_attention_num_buckets=8,
        )
    )
    language_model = GPT2LMHeadModel(
        GPT2Config(n_embd=16, n_head=2, n_layer=2, vocab_size=len(tokenizer), n_positions=99)
    )
    language_model.config.max_new_tokens = 8  # the pipeline reads its default from here
    projection_model = AudioLDM2ProjectionModel(
        text_encoder_dim=16, text_encoder_1_dim=32, langauge_model_dim=16
    )
    unet = AudioLDM2UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=(8, 16),
    )
    vae = AutoencoderKL(
        block_out_channels=[8, 16],
        in_channels=1,
        out_channels=1,
        norm_num_groups=8,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
    )
    vocoder = SpeechT5HifiGan(
        SpeechT5HifiGanConfig(
            model_in_dim=8,  # mel bins: the VAE's output width
            sampling_rate=16000,
            upsample_initial_channel=16,
            upsample_rates=[8, 5, 4],  # 160 samples a mel frame, as the real vocoder
            upsample_kernel_sizes=[16, 10, 8],
            resblock_kernel_sizes=[3],
            resblock_dilation_sizes=[[1, 3]],
            normalize_before=False,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
    )
    return AudioLDM2Pipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        projection_model=projection_model,
        language_model=language_model,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        feature_extractor=ClapFeatureExtractor(),
        unet=unet,
        scheduler=scheduler,
        vocoder=vocoder,
    )
