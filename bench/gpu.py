"""GPU benchmark: Wan2.1-T2V-1.3B at full size with random weights, plain diffusers against Kinema's switches.

Builds the Wan2.1-T2V-1.3B architecture with random weights (no download; random weights cost the same
time as trained ones), saves it once as a diffusers directory, then for each row (480p, 720p, 1080p;
81 frames, 50 steps, guidance 5) measures in this one process:

- `diffusers`: the baseline, plain `WanPipeline.from_pretrained(dtype=bfloat16)` with its defaults and
  diffusers' float32 VAE, `pipe(..., output_type="np")`, then the frames encoded with libx264;
- `kinema`: the worker's path, `load_pipeline(..., options=InferenceOptions(...))` then `generate` +
  `render_mp4` (the visible watermark on): bfloat16, the fastest attention backend that runs here,
  regional `torch.compile`, both guidance branches in one batch, NVENC when it opens;
- `kinema+cache`: the same plus the first-block step cache; its error is reported against `kinema`.

    .venv/bin/python bench/gpu.py [--rows 480p,720p,1080p] [--steps 50] [--variants ...]   # on a GPU
    .venv/bin/python bench/gpu.py --small    # a tiny config on the CPU, to check the script (~20 s)

Prints a table, writes JSON under bench/results/ (gpu.json; gpu-small.json for --small) and the table
into docs/performance.md (between this script's markers), with the device named.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "performance.md"
PROMPT = "a red panda climbing a snowy pine tree at dawn, cinematic, detailed fur"
NEGATIVE = "blurry, low quality, distorted"
SEED = 1234
FPS = 16
TARGET_STEPS = 50  # the workload's steps; a run with fewer (--steps) is projected to it
TEXT_TOKENS = 512  # WanPipeline pads every prompt to max_sequence_length=512

# Peak dense bfloat16 tensor throughput (TFLOP/s, no sparsity), by a substring of the CUDA device name;
# the first match wins, so the more specific names come first.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0),
    ("GH200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("A100", 312.0),
    ("L40S", 362.0),
)


# ---------------------------------------------------------------------------------------- architecture


@dataclass(frozen=True)
class Arch:
    """A Wan text-to-video architecture: the components' configs, built with random weights."""

    name: str
    transformer: dict[str, Any]
    text_encoder: dict[str, Any]
    vae: dict[str, Any]
    scheduler: dict[str, Any]
    note: str = ""


# Wan-AI/Wan2.1-T2V-1.3B-Diffusers, from its published configs.
WAN_1_3B = Arch(
    name="Wan2.1-T2V-1.3B (random weights)",
    transformer={
        "patch_size": (1, 2, 2),
        "num_attention_heads": 12,
        "attention_head_dim": 128,
        "in_channels": 16,
        "out_channels": 16,
        "text_dim": 4096,
        "freq_dim": 256,
        "ffn_dim": 8960,
        "num_layers": 30,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
        "rope_max_seq_len": 1024,
    },
    # google/umt5-xxl's encoder (5.7 B parameters), as the Wan text encoder.
    text_encoder={
        "vocab_size": 256384,
        "d_model": 4096,
        "d_kv": 64,
        "d_ff": 10240,
        "num_layers": 24,
        "num_heads": 64,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "feed_forward_proj": "gated-gelu",
        "layer_norm_epsilon": 1e-6,
        "tie_word_embeddings": False,
    },
    vae={},  # AutoencoderKLWan's defaults are Wan 2.1's VAE: base_dim 96, z_dim 16, dim_mult [1, 2, 4, 4]
    scheduler={
        "prediction_type": "flow_prediction",
        "use_flow_sigmas": True,
        "num_train_timesteps": 1000,
        "flow_shift": 3.0,
    },
    note="the real tokenizer (umt5-xxl SentencePiece) needs a download: ByT5's byte tokenizer stands in; "
    "prompts are padded to 512 tokens either way, so the text encoder does the same work",
)

# A few million parameters: the same code paths on the CPU in seconds.
SMALL = Arch(
    name="small Wan (random weights, CPU check)",
    transformer={
        "patch_size": (1, 2, 2),
        "num_attention_heads": 2,
        "attention_head_dim": 32,
        "in_channels": 16,
        "out_channels": 16,
        "text_dim": 64,
        "freq_dim": 256,
        "ffn_dim": 256,
        "num_layers": 4,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
        "rope_max_seq_len": 1024,
    },
    text_encoder={
        "d_model": 64,
        "d_kv": 16,
        "d_ff": 128,
        "num_layers": 2,
        "num_heads": 4,
        "relative_attention_num_buckets": 8,
    },
    vae={"base_dim": 4, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 0},
    scheduler=WAN_1_3B.scheduler,
)


@dataclass(frozen=True)
class Row:
    """One workload: the video asked for."""

    label: str
    width: int
    height: int
    frames: int


ROWS = {
    "480p": Row("480p", 832, 480, 81),
    "720p": Row("720p", 1280, 720, 81),
    "1080p": Row("1080p", 1920, 1080, 81),
}
SMALL_ROW = Row("small", 64, 64, 9)


def build_weights(arch: Arch, path: Path, device: torch.device) -> None:
    """Build `arch` with seeded random weights on `device` and save it as a diffusers directory.

    Built on the device (a 5.7 B-parameter text encoder initialises in seconds on a GPU, minutes on a
    CPU) and saved in bfloat16 there (float32 on the CPU); the VAE always in float32. Skipped when
    `path` already holds this architecture.
    """
    from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan
    from diffusers.models.transformers.transformer_wan import WanTransformer3DModel
    from diffusers.pipelines.wan.pipeline_wan import WanPipeline
    from diffusers.schedulers.scheduling_unipc_multistep import UniPCMultistepScheduler
    from transformers import ByT5Tokenizer, UMT5Config, UMT5EncoderModel

    stamp = path / "bench-arch.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == {"name": arch.name, **_arch_json(arch)}:
        return
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.device(device):
        torch.manual_seed(SEED)
        tokenizer = ByT5Tokenizer()
        text_config = {"vocab_size": tokenizer.vocab_size + 10, **arch.text_encoder}
        with _default_dtype(dtype):  # never materialise the 5.7 B encoder in float32
            text_encoder = UMT5EncoderModel(UMT5Config(**text_config))
        transformer = WanTransformer3DModel(**arch.transformer)
        if dtype != torch.float32:
            transformer = transformer.to(dtype)  # from_pretrained puts its float32 modules back
        vae = AutoencoderKLWan(**arch.vae)
    pipe = WanPipeline(
        tokenizer=tokenizer,  # type: ignore[arg-type]
        text_encoder=text_encoder,
        transformer=transformer,
        vae=vae,
        scheduler=UniPCMultistepScheduler(**arch.scheduler),
    )
    path.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(path, safe_serialization=True)
    stamp.write_text(json.dumps({"name": arch.name, **_arch_json(arch)}))
    del pipe, text_encoder, transformer, vae
    release(device)


def _arch_json(arch: Arch) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(arch), default=list))


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


# --------------------------------------------------------------------------------------------- FLOPs


def latent_tokens(transformer: dict[str, Any], width: int, height: int, frames: int) -> int:
    """Video tokens the transformer sees: VAE 4x in time, 8x in space, then the 1x2x2 patches."""
    pt, ph, pw = transformer["patch_size"]
    return ((frames - 1) // 4 + 1) // pt * (height // 8 // ph) * (width // 8 // pw)


def transformer_flops(transformer: dict[str, Any], width: int, height: int, frames: int) -> dict[str, float]:
    """FLOPs of one transformer pass (one guidance branch) counted from the shapes, 2 per multiply-add.

    With L video tokens, T = 512 text tokens, d = heads x head_dim, f = ffn_dim, per block:
      self-attention   8 L d^2 (q, k, v, out projections) + 4 L^2 d (scores Q K^T and A V)
      cross-attention  4 L d^2 (q, out) + 4 T d^2 (k, v of the text) + 4 L T d (scores and A V)
      feed-forward     4 L d f
    plus, once per pass, the patch embedding, the text embedder (text_dim -> d -> d) and the output
    projection. Norms, RoPE, modulation and the timestep MLP are elementwise or tiny and not counted.
    A step with classifier-free guidance is two passes.
    """
    d = transformer["num_attention_heads"] * transformer["attention_head_dim"]
    f = transformer["ffn_dim"]
    layers = transformer["num_layers"]
    channels = transformer["in_channels"]
    patch = int(np.prod(transformer["patch_size"]))
    tokens = latent_tokens(transformer, width, height, frames)
    text = TEXT_TOKENS
    self_attn = 8 * tokens * d * d + 4 * tokens * tokens * d
    cross_attn = 4 * tokens * d * d + 4 * text * d * d + 4 * tokens * text * d
    ffn = 4 * tokens * d * f
    block = self_attn + cross_attn + ffn
    outside = (
        2 * tokens * channels * patch * d  # patch embedding
        + 2 * text * (transformer["text_dim"] * d + d * d)  # text embedder
        + 2 * tokens * d * transformer["out_channels"] * patch  # output projection
    )
    return {
        "tokens": float(tokens),
        "block": float(block),
        "attention_share": float((4 * tokens * tokens * d + 4 * tokens * text * d) / block),
        "outside_blocks": float(outside),
        "pass": float(layers * block + outside),
    }


def peak_tflops(device: torch.device) -> tuple[str, float | None]:
    """The device's name and its peak dense bfloat16 TFLOP/s from `PEAK_BF16_TFLOPS` (None: unknown)."""
    if device.type != "cuda":
        return f"{_cpu_model()} ({os.cpu_count()} cores)", None
    name = torch.cuda.get_device_name(device)
    for fragment, tflops in PEAK_BF16_TFLOPS:
        if fragment in name:
            return name, tflops
    return name, None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "CPU"


# --------------------------------------------------------------------------------------------- timing


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a clock read after it means the work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release(device: torch.device) -> None:
    """Free what the last variant held before the next loads."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


class TimedFrames:
    """Wraps the frame iterator to add up the time spent producing frames (denoise and decode)."""

    def __init__(self, frames: Iterator[np.ndarray]) -> None:
        self.frames = frames
        self.inside_s = 0.0
        self.seen: list[np.ndarray] = []

    def __iter__(self) -> TimedFrames:
        return self

    def __next__(self) -> np.ndarray:
        start = time.perf_counter()
        try:
            frame = next(self.frames)
        finally:
            self.inside_s += time.perf_counter() - start
        self.seen.append(frame)
        return frame


@dataclass
class Measured:
    """One timed video: where the seconds went, and its frames for the comparisons."""

    step_marks: list[float]
    start: float
    denoise_end: float
    frames_end: float
    end: float
    peak_gib: float | None
    encoder: str
    frames: np.ndarray = field(repr=False)
    cache: dict[str, Any] | None = None
    all_total_s: list[float] = field(default_factory=list)

    def summary(self, target_steps: int) -> dict[str, Any]:
        marks = self.step_marks
        # Steady state: the first step also pays for the text encoder and any lazy set-up.
        s_per_step = (marks[-1] - marks[0]) / (len(marks) - 1) if len(marks) > 1 else marks[0] - self.start
        total = self.end - self.start
        return {
            "steps": len(marks),
            "s_per_step": s_per_step,
            "first_step_s": marks[0] - self.start,
            "denoise_s": self.denoise_end - self.start,
            "decode_s": self.frames_end - self.denoise_end,
            "encode_s": self.end - self.frames_end,
            "total_s": total,
            # Steps are the same work each (a cached run's skips aside): project to the 50-step workload.
            "target_steps": target_steps,
            "total_s_at_target_steps": total + max(target_steps - len(marks), 0) * s_per_step,
            "reps_total_s": self.all_total_s,
            "peak_gib": self.peak_gib,
            "encoder": self.encoder,
            "step_cache": self.cache,
        }


@dataclass(frozen=True)
class Workload:
    row: Row
    steps: int
    guidance: float
    warmup_steps: int
    reps: int
    out_dir: Path

    def generation_size(self) -> tuple[int, int]:
        """Wan runs at multiples of 16; Kinema crops back to the request (1080 runs as 1088)."""
        return (-(-self.row.width // 16) * 16, -(-self.row.height // 16) * 16)


def run_diffusers(weights: Path, work: Workload, device: torch.device) -> tuple[dict[str, Any], Measured]:
    """The baseline: plain `WanPipeline` as diffusers documents it, then the same libx264 encode."""
    import diffusers
    from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan
    from diffusers.pipelines.wan.pipeline_wan import WanPipeline
    from packaging.version import Version

    from model.export import render_mp4

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    key = "dtype" if Version(diffusers.__version__) >= Version("0.42") else "torch_dtype"
    started = time.perf_counter()
    vae = AutoencoderKLWan.from_pretrained(weights, subfolder="vae", **{key: torch.float32})
    pipe = WanPipeline.from_pretrained(weights, vae=vae, **{key: dtype}).to(device)
    pipe.set_progress_bar_config(disable=True)
    load_s = time.perf_counter() - started
    width, height = work.generation_size()

    def once(steps: int, name: str) -> Measured:
        marks: list[float] = []

        def on_step_end(_pipe: Any, _i: int, _t: Any, _tensors: dict[str, Any]) -> dict[str, Any]:
            sync(device)
            marks.append(time.perf_counter())
            return {}

        reset_peak(device)
        sync(device)
        start = time.perf_counter()
        with torch.inference_mode():
            video = pipe(
                PROMPT,
                negative_prompt=NEGATIVE,
                height=height,
                width=width,
                num_frames=work.row.frames,
                num_inference_steps=steps,
                guidance_scale=work.guidance,
                generator=torch.Generator("cpu").manual_seed(SEED),
                output_type="np",
                callback_on_step_end=on_step_end,
            ).frames[0]
        generated = time.perf_counter()
        frames = crop((np.clip(video, 0.0, 1.0) * 255).round().astype(np.uint8), work.row)
        del video
        render_mp4(iter(frames), work.out_dir / f"{name}.mp4", fps=FPS, encoder="libx264")
        end = time.perf_counter()
        return Measured(marks, start, marks[-1], generated, end, peak_gib(device), "libx264", frames)

    once(work.warmup_steps, "diffusers-warmup")
    measured = best_of(work.reps, lambda: once(work.steps, "diffusers"))
    return {"load_s": load_s, "dtype": str(dtype).removeprefix("torch.")}, measured


def run_kinema(
    weights: Path, work: Workload, device: torch.device, options: Any
) -> tuple[dict[str, Any], Measured]:
    """Kinema's worker path: `load_pipeline` with the switches, `generate`, `render_mp4` with the mark."""
    from model.config import GenerationRequest, Phase, StepInfo
    from model.export import render_mp4, resolve_video_encoder
    from model.generate import generate
    from model.pipeline import load_pipeline
    from model.watermark import VisibleWatermark

    started = time.perf_counter()
    loaded = load_pipeline(str(weights), cache_dir=weights.parent, device=device, options=options)
    load_s = time.perf_counter() - started
    request = GenerationRequest(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        width=work.row.width,
        height=work.row.height,
        num_frames=work.row.frames,
        fps=FPS,
        num_inference_steps=work.steps,
        guidance_scale=work.guidance,
        seed=SEED,
        model_id=str(weights),
    )
    watermark = VisibleWatermark(text="AI-generated")
    encoder = resolve_video_encoder(options.video_encoder, work.row.width, work.row.height)

    def once(steps: int, name: str) -> Measured:
        events: list[tuple[float, StepInfo]] = []

        def on_step(info: StepInfo) -> None:
            if info.phase == Phase.DENOISING:
                sync(device)
            events.append((time.perf_counter(), info))

        reset_peak(device)
        sync(device)
        start = time.perf_counter()
        frames = generate(replace(request, num_inference_steps=steps), on_step, model=loaded)
        timed = TimedFrames(frames)
        try:
            render_mp4(timed, work.out_dir / f"{name}.mp4", fps=FPS, watermark=watermark, encoder=encoder)
        finally:
            frames.close()
        end = time.perf_counter()
        marks = [t for t, info in events if info.phase == Phase.DENOISING]
        stats = loaded.step_cache_stats
        cache = None
        if stats is not None:
            cache = {
                "passes": stats.passes,
                "skipped": stats.skipped,
                "threshold": options.step_cache_threshold,
            }
        return Measured(
            marks,
            start,
            marks[-1],
            start + timed.inside_s,
            end,
            peak_gib(device),
            encoder,
            np.stack(timed.seen),
            cache,
        )

    # The warm-up runs at the timed shape: compilation happens there, not in the timed run.
    once(work.warmup_steps, "kinema-warmup")
    measured = best_of(work.reps, lambda: once(work.steps, "kinema"))
    return {"load_s": load_s, "options": asdict(options)}, measured


def best_of(reps: int, measure: Callable[[], Measured]) -> Measured:
    """The fastest of `reps` timed runs (the least disturbed by anything else on the machine)."""
    runs = [measure() for _ in range(reps)]
    best = min(runs, key=lambda m: m.end - m.start)
    best.all_total_s = [m.end - m.start for m in runs]
    return best


def crop(frames: np.ndarray, row: Row) -> np.ndarray:
    """Center-crop (t, H, W, 3) frames to the row's size, as Kinema crops its generation size."""
    top = (frames.shape[1] - row.height) // 2
    left = (frames.shape[2] - row.width) // 2
    return np.ascontiguousarray(frames[:, top : top + row.height, left : left + row.width])


def compare(reference: np.ndarray, frames: np.ndarray) -> dict[str, float | None]:
    """PSNR (dB) and mean absolute difference (grey levels) of `frames` against `reference`."""
    if reference.shape != frames.shape:
        return {"psnr_db": None, "mean_abs_diff": None}
    diff = reference.astype(np.float64) - frames.astype(np.float64)
    mse = float((diff**2).mean())
    return {
        "psnr_db": None if mse == 0 else float(10 * np.log10(255**2 / mse)),
        "mean_abs_diff": float(np.abs(diff).mean()),
    }


# --------------------------------------------------------------------------------------------- variants


def best_attention_backend(device: torch.device, dtype: torch.dtype) -> str | None:
    """The first attention backend that runs here, fastest first; None: diffusers' default."""
    from model.config import ModelError
    from model.speedups import check_attention_backend

    if device.type != "cuda":
        return None
    for backend in ("_flash_3", "flash", "_native_cudnn", "_native_flash"):
        try:
            check_attention_backend(backend, device, dtype)
        except ModelError:
            continue
        return backend
    return None


def kinema_options(args: argparse.Namespace, device: torch.device, row: Row, cache: bool) -> Any:
    """The switches for the Kinema variants on this device."""
    from model.config import InferenceOptions

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    backend = args.attention if args.attention != "auto" else best_attention_backend(device, dtype)
    return InferenceOptions(
        dtype="bf16" if device.type == "cuda" else "fp32",
        attention_backend=backend or None,
        compile="regional" if args.compile else "none",
        cfg_batch=True,
        step_cache="first_block" if cache else None,
        step_cache_threshold=args.cache_threshold,
        # Tiling trades a little time for memory: only where the whole-frame decode is large.
        vae_tiling=row.height >= args.tile_from,
        video_encoder="auto",
    )


def run_row(
    args: argparse.Namespace, arch: Arch, weights: Path, row: Row, device: torch.device, out_dir: Path
) -> list[dict[str, Any]]:
    """Every variant on one workload; speed-ups and errors against the variants measured before."""
    work = Workload(row, args.steps, args.guidance, args.warmup_steps, args.reps, out_dir)
    flops = transformer_flops(arch.transformer, *work.generation_size(), row.frames)
    _, peak = peak_tflops(device)
    results: list[dict[str, Any]] = []
    measured: dict[str, Measured] = {}
    for variant in args.variants:
        print(f"[{row.label}] {variant} ...", file=sys.stderr, flush=True)
        try:
            if variant == "diffusers":
                info, m = run_diffusers(weights, work, device)
                branches_per_pass = 1
            else:
                options = kinema_options(args, device, row, cache=variant == "kinema+cache")
                info, m = run_kinema(weights, work, device, options)
                branches_per_pass = 2 if options.cfg_batch else 1
        except torch.cuda.OutOfMemoryError as exc:
            results.append({"row": row.label, "variant": variant, "error": f"out of memory: {exc}"[:300]})
            continue
        finally:
            # The pipeline went out of scope with the call: free it (and its compiled blocks) now.
            torch._dynamo.reset()
            release(device)
        measured[variant] = m
        summary = m.summary(args.target_steps)
        # FLOPs actually computed per step: a cached pass runs only the first block and the ends.
        step_flops = 2 * flops["pass"]
        if m.cache is not None and m.cache["passes"]:
            head_only = flops["outside_blocks"] + flops["block"]
            computed = (m.cache["passes"] - m.cache["skipped"]) * flops["pass"] + m.cache[
                "skipped"
            ] * head_only
            step_flops = computed * branches_per_pass / summary["steps"]
        achieved = step_flops / summary["s_per_step"] / 1e12
        result = {
            "row": row.label,
            "variant": variant,
            "request": {**asdict(row), "steps": args.steps, "guidance": args.guidance, "fps": FPS},
            **info,
            **summary,
            "tflops_per_step": step_flops / 1e12,
            "achieved_tflops": achieved,
            "mfu": achieved / peak if peak else None,
        }
        if "diffusers" in measured and variant != "diffusers":
            base = measured["diffusers"].summary(args.target_steps)
            result["speedup_video"] = base["total_s_at_target_steps"] / summary["total_s_at_target_steps"]
            result["speedup_step"] = base["s_per_step"] / summary["s_per_step"]
            result["vs_diffusers"] = compare(measured["diffusers"].frames, m.frames)
        if variant == "kinema+cache" and "kinema" in measured:
            result["cache_error_vs_kinema"] = compare(measured["kinema"].frames, m.frames)
        results.append(result)
    return results


# ----------------------------------------------------------------------------------------------- output


def machine_info(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on, and when."""
    name, peak = peak_tflops(device)
    versions = {}
    for package in (
        "torch",
        "diffusers",
        "transformers",
        "av",
        "flash-attn",
        "flash_attn_3",
        "sageattention",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    info: dict[str, Any] = {
        "device": name,
        "device_type": device.type,
        "peak_bf16_tflops": peak,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "packages": versions,
    }
    if device.type == "cuda":
        info["cuda"] = torch.version.cuda
        info["memory_gib"] = torch.cuda.get_device_properties(device).total_memory / 2**30
    else:
        info["torch_threads"] = torch.get_num_threads()
        info["loadavg_at_start"] = list(os.getloadavg())  # a shared CPU: other work shows here
    return info


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    """The results as a Markdown table: one line per row and variant."""
    headers = [
        "row",
        "variant",
        "s/step",
        "denoise s",
        "decode s",
        "encode s",
        "total s",
        "peak GiB",
        "TFLOP/s",
        "MFU",
        "speed-up (video)",
        "speed-up (step)",
        "PSNR vs diffusers",
        "step cache",
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['row']} | {r['variant']} | {r['error']} |" + " |" * (len(headers) - 3))
            continue
        cache = "-"
        if r.get("step_cache"):
            c = r["step_cache"]
            err = r.get("cache_error_vs_kinema")
            cache = f"{c['skipped']}/{c['passes']} passes skipped (threshold {c['threshold']})"
            if err is not None:
                psnr = "identical" if err["psnr_db"] is None else f"{err['psnr_db']:.1f} dB"
                cache += f"; vs kinema: {psnr}, {fmt(err['mean_abs_diff'])} grey levels mean"
        vs = r.get("vs_diffusers") or {}
        mfu = r.get("mfu")
        cells = [
            r["row"],
            r["variant"],
            fmt(r["s_per_step"], 3),
            fmt(r["denoise_s"]),
            fmt(r["decode_s"]),
            fmt(r["encode_s"]) + ("" if r["encoder"] == "libx264" else f" ({r['encoder']})"),
            fmt(r["total_s_at_target_steps"])
            + ("" if r["steps"] >= r["target_steps"] else f" ({r['target_steps']} steps, projected)"),
            fmt(r["peak_gib"], 1),
            fmt(r["achieved_tflops"], 3 if r["achieved_tflops"] < 1 else 1),
            "-" if mfu is None else f"{mfu:.0%}",
            fmt(r.get("speedup_video")) + ("x" if r.get("speedup_video") else ""),
            fmt(r.get("speedup_step")) + ("x" if r.get("speedup_step") else ""),
            "-" if not vs else ("identical" if vs["psnr_db"] is None else f"{vs['psnr_db']:.1f} dB"),
            cache,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def doc_section(report: dict[str, Any]) -> str:
    """The block written into docs/performance.md: device, workload and the table."""
    machine = report["machine"]
    peak = machine["peak_bf16_tflops"]
    if machine["device_type"] == "cuda":
        what = "GPU"
    else:
        load = machine["loadavg_at_start"][0]
        what = f"CPU: the `--small` check, not a GPU figure; load average {load:.1f} at the start"
    lines = [
        f"Measured on **{machine['device']}** ({what}), {machine['date']}, "
        f"torch {machine['packages'].get('torch')}, diffusers {machine['packages'].get('diffusers')}; "
        f"peak bf16 {fmt(peak, 0) + ' TFLOP/s' if peak else 'unknown (MFU not computed)'}.",
        f"Model: {report['arch']['name']}. Workload: {report['workload']}.",
        "",
        markdown_table(report["results"]),
        "",
        f"Raw figures: `{report['json']}`.",
    ]
    return "\n".join(lines)


def write_doc(path: Path, marker: str, body: str) -> None:
    """Replace this script's block (between its markers) in `path`, or append one."""
    start, end = f"<!-- bench/gpu.py {marker}: start -->", f"<!-- bench/gpu.py {marker}: end -->"
    block = f"{start}\n{body}\n{end}"
    text = path.read_text() if path.is_file() else "# Performance\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# ------------------------------------------------------------------------------------------------- main


VARIANTS = ("diffusers", "kinema", "kinema+cache")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="A tiny config on the CPU: checks the script.")
    parser.add_argument("--rows", default="480p", help="Comma-separated: 480p, 720p, 1080p (default 480p).")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"Comma-separated, of {VARIANTS}.")
    parser.add_argument("--steps", type=int, default=None, help="Denoising steps (default 50; 8 --small).")
    parser.add_argument("--warmup-steps", type=int, default=2, help="Steps of the untimed warm-up run.")
    parser.add_argument("--guidance", type=float, default=5.0, help="Classifier-free guidance scale.")
    parser.add_argument(
        "--attention", default="auto", help="Kinema's attention backend: auto (fastest that runs) or a name."
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Regional torch.compile in the Kinema variants (default: on for a GPU, off for --small).",
    )
    parser.add_argument(
        "--cache-threshold", type=float, default=None, help="First-block cache threshold (0.05; 0.1 --small)."
    )
    parser.add_argument("--reps", type=int, default=1, help="Timed runs per variant; the fastest counts.")
    parser.add_argument(
        "--tile-from", type=int, default=1080, help="VAE tiling for rows this tall or taller."
    )
    parser.add_argument(
        "--weights", type=Path, default=None, help="Where the random-weight model is saved (reused if there)."
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="JSON path (default bench/results/gpu*.json)."
    )
    parser.add_argument("--doc", type=Path, default=DOC, help="Markdown file to write the table into.")
    parser.add_argument(
        "--device", default=None, help="cuda or cpu (default: cuda when present; cpu --small)."
    )
    args = parser.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {VARIANTS}")
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    if not args.small and (bad := sorted(set(args.rows) - set(ROWS))):
        parser.error(f"unknown rows {bad}; choose from {sorted(ROWS)}")
    args.steps = args.steps or (8 if args.small else TARGET_STEPS)
    args.target_steps = args.steps if args.small else TARGET_STEPS
    # The small random model's first block drifts more per step than a trained one's: a looser threshold.
    args.cache_threshold = (
        args.cache_threshold if args.cache_threshold is not None else (0.1 if args.small else 0.05)
    )
    if args.steps < 2 or args.reps < 1 or args.warmup_steps < 1:
        parser.error("--steps must be at least 2, --reps and --warmup-steps at least 1")
    if args.device is None:
        args.device = "cpu" if args.small or not torch.cuda.is_available() else "cuda"
    if args.compile is None:
        args.compile = args.device == "cuda"
    if args.output is None:
        args.output = RESULTS / ("gpu-small.json" if args.small else "gpu.json")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()  # "attention backends are experimental" on every load
    device = torch.device(args.device)
    if device.type != "cuda" and not args.small:
        print("no CUDA device: the full-size benchmark needs a GPU (try --small for the CPU check)")
        return 2
    arch = SMALL if args.small else WAN_1_3B
    rows = [SMALL_ROW] if args.small else [ROWS[r] for r in args.rows]
    with tempfile.TemporaryDirectory(prefix="kinema-bench-gpu-") as tmp:
        weights = args.weights or Path(tmp) / "weights"
        print(f"building {arch.name} in {weights} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        build_weights(arch, weights, device)
        build_s = time.perf_counter() - started
        results: list[dict[str, Any]] = []
        for row in rows:
            out_dir = Path(tmp) / row.label
            out_dir.mkdir()
            results.extend(run_row(args, arch, weights, row, device, out_dir))
    report = {
        "benchmark": "gpu",
        "machine": machine_info(device),
        "arch": _arch_json(arch),
        "workload": f"{', '.join(f'{r.width}x{r.height}' for r in rows)}, {rows[0].frames} frames, "
        f"{args.steps} steps, guidance {args.guidance}, {FPS} fps, seed {SEED}",
        "flops_per_pass": {
            row.label: transformer_flops(
                arch.transformer, -(-row.width // 16) * 16, -(-row.height // 16) * 16, row.frames
            )
            for row in rows
        },
        "build_weights_s": build_s,
        "results": results,
        "json": str(args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    write_doc(args.doc, "cpu --small" if args.small else "gpu", doc_section(report))
    print(markdown_table(results))
    print(f"\nwrote {args.output} and {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
