"""Load a diffusers video pipeline for a model id, building the tiny built-in Wan on first use."""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import shutil
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import diffusers
import torch

# Concrete module paths: mypy cannot see through diffusers' lazy top-level exports.
from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan
from diffusers.models.transformers.transformer_wan import WanTransformer3DModel
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.pipelines.wan.pipeline_wan import WanPipeline
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
from packaging.version import Version
from transformers import ByT5Tokenizer, UMT5Config, UMT5EncoderModel

from model.config import InferenceOptions, ModelError
from model.registry import BUILTIN_TINY_WAN, ModelSpec, UnknownModelError, get_spec
from model.speedups import StepCacheStats, apply_inference_options, resolve_dtype

logger = logging.getLogger(__name__)
_build_lock = threading.Lock()

# Bump the suffix whenever `build_tiny_wan` changes, so old caches are not reused.
TINY_WAN_DIRNAME = "tiny-wan-v1"
TINY_WAN_SEED = 20240229

# diffusers 0.42 renamed `torch_dtype` to `dtype` (the old name warns); older releases know only the old one.
_DTYPE_KWARG = "dtype" if Version(diffusers.__version__) >= Version("0.42") else "torch_dtype"


@dataclass(slots=True)
class LoadedModel:
    """A pipeline ready to run, with the spec it was loaded for, where its weights live and its switches.

    `step_cache_stats` counts the step cache's passes and skips for the latest generation (None when
    the step cache is off).
    """

    pipe: DiffusionPipeline
    spec: ModelSpec
    device: torch.device
    dtype: torch.dtype
    options: InferenceOptions = field(default_factory=InferenceOptions)
    step_cache_stats: StepCacheStats | None = None


def pick_device_and_dtype() -> tuple[torch.device, torch.dtype]:
    """CUDA with bfloat16 when a GPU is present, else CPU with float32 (CPU bf16 is slow and lossy)."""
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.float32


def build_tiny_wan(path: Path) -> None:
    """Build the small random-weight Wan pipeline and save it (safetensors) at `path`.

    The weights depend only on a fixed seed, so every build is identical. The pipeline is written to a
    temporary directory next to `path` and renamed into place, so a concurrent reader never sees a
    half-written directory; if another process wins the race its copy is kept.
    """
    save_built_pipeline(Path(path), _tiny_wan_pipeline)


def save_built_pipeline(path: Path, build: Callable[[], DiffusionPipeline]) -> None:
    """Save the pipeline `build()` makes at `path`, unless one is there: whole, or not at all.

    It is written to a temporary directory next to `path` and renamed into place, so a concurrent
    reader never sees a half-written directory; if another process wins the race its copy is kept.
    Builds run one at a time in this process: threads share torch's global RNG, which seeded builds fork.
    """
    if (path / "model_index.json").is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkdtemp: its 0700 mode would carry over to the renamed cache directory.
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.partial"
    tmp.mkdir()
    try:
        with _build_lock:
            pipeline = build()
        pipeline.save_pretrained(tmp, safe_serialization=True)
        try:
            os.rename(tmp, path)
        except OSError:
            # Another process renamed its (identical) build into place first.
            if not (path / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _tiny_wan_pipeline() -> WanPipeline:
    """The tiny Wan components; sized so 256x256x17 frames at 10 steps runs in seconds on 2 CPU cores."""
    # fork_rng: seeding must not disturb the caller's global RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_WAN_SEED)
        tokenizer = ByT5Tokenizer()
        text_encoder = UMT5EncoderModel(
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
        transformer = WanTransformer3DModel(
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
            # Room for 1920 px (120 patches per axis) and long clips: RoPE tables are sliced, not resized.
            rope_max_seq_len=1024,
        )
        # The decoder dominates CPU time (conv3d at full frame size): the fewest channels and blocks work.
        vae = AutoencoderKLWan(
            base_dim=4,
            z_dim=16,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=0,
            temperal_downsample=[False, True, True],
        )
        scheduler = FlowMatchEulerDiscreteScheduler(shift=5.0)
    return WanPipeline(
        tokenizer=tokenizer,  # type: ignore[arg-type]  # hinted as AutoTokenizer; any tokenizer works
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=scheduler,
    )


def load_pipeline(
    model_id: str,
    *,
    cache_dir: Path,
    path: str | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    options: InferenceOptions | None = None,
) -> LoadedModel:
    """Load the pipeline for `model_id` (a built-in id or a local diffusers directory) onto `device`.

    `builtin:tiny-wan` is built into `cache_dir/tiny-wan-v1` on first use, then loaded from disk like
    any other pipeline. With `path` (a directory or `builtin:tiny-wan`) the model is served as
    `model_id` (see `model.registry.get_spec`). The device defaults to `pick_device_and_dtype()`; the
    dtype to `options.dtype` ("auto": bfloat16 on CUDA, float32 elsewhere). With `options.cpu_offload`
    on a GPU the weights stay in CPU memory (diffusers' model CPU offload). The speed switches in
    `options` are applied after loading (`model.speedups`). Raises `ModelError`.
    """
    options = options or InferenceOptions()
    default_device, _ = pick_device_and_dtype()
    device = torch.device(device) if device is not None else default_device
    dtype = dtype or resolve_dtype(options, device)
    try:
        spec = get_spec(model_id, path)
    except UnknownModelError as exc:
        raise ModelError(str(exc)) from exc

    if (path or model_id) == BUILTIN_TINY_WAN:
        weights = Path(cache_dir).expanduser() / TINY_WAN_DIRNAME
        try:
            build_tiny_wan(weights)
        except OSError as exc:
            raise ModelError(f"could not build {model_id!r} in {weights}: {exc}") from exc
    else:
        weights = Path(spec.path or model_id)

    pipeline_class = getattr(diffusers, spec.pipeline_class, None)
    if pipeline_class is None:
        raise ModelError(f"diffusers {diffusers.__version__} has no {spec.pipeline_class}; upgrade diffusers")
    try:
        kwargs: dict[str, object] = {_DTYPE_KWARG: dtype, "local_files_only": True}
        if spec.family == "wan" and dtype != torch.float32:
            # diffusers' Wan examples keep the VAE in float32: its decode degrades visibly in bf16.
            kwargs["vae"] = AutoencoderKLWan.from_pretrained(
                weights, subfolder="vae", local_files_only=True, **{_DTYPE_KWARG: torch.float32}
            )
        pipe = pipeline_class.from_pretrained(weights, **kwargs)
        if options.cpu_offload and device.type != "cpu":
            # The weights stay in CPU memory; each component moves to the GPU while it runs.
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
    except Exception as exc:
        # Without accelerate diffusers cannot load models that keep some layers in fp32 (Wan does).
        hint = "" if importlib.util.find_spec("accelerate") else " (is the `accelerate` package installed?)"
        raise ModelError(
            f"could not load {spec.pipeline_class} {model_id!r} from {weights}: {exc}{hint}"
        ) from exc
    pipe.set_progress_bar_config(disable=True)
    stats = apply_inference_options(pipe, options, device, dtype)
    if device.type == "cpu":
        _keep_freed_memory_in_process()
    logger.info("loaded %s (%s) on %s as %s with %s", model_id, spec.pipeline_class, device, dtype, options)
    return LoadedModel(
        pipe=pipe, spec=spec, device=device, dtype=dtype, options=options, step_cache_stats=stats
    )


def _keep_freed_memory_in_process() -> None:
    """Stop glibc handing large freed blocks back to the OS (CPU only; a no-op elsewhere).

    CPU conv3d allocates 50-100 MB scratch buffers per call; by default glibc mmaps and unmaps each one
    and the page faults add up (tiny Wan, 2 s clip on 2 cores: 2.5 s -> 2.1 s; 2x for a wider VAE).
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl or another libc without these knobs
        return
    m_trim_threshold, m_mmap_max = -1, -4
    libc.mallopt(m_mmap_max, 0)
    libc.mallopt(m_trim_threshold, 1 << 30)
