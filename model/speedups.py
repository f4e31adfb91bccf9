"""Apply the speed switches of `InferenceOptions` to a loaded pipeline.

Each switch is a diffusers feature applied once, after loading: the attention backend
(`set_attention_backend`), regional compilation (`compile_repeated_blocks`), the first-block step cache
(`FirstBlockCacheConfig`) and VAE tiling (`enable_tiling`). Guidance batching lives in `model.denoise`
and the video encoder in `model.export`; they act per generation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.hooks import FirstBlockCacheConfig, HookRegistry
from diffusers.hooks.first_block_cache import _FBC_LEADER_BLOCK_HOOK
from diffusers.models.attention_dispatch import (
    AttentionBackendName,
    _AttentionBackendRegistry,
    _check_attention_backend_requirements,
    dispatch_attention_fn,
)
from diffusers.pipelines.pipeline_utils import DiffusionPipeline

from model.config import InferenceOptions, ModelError

logger = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(slots=True)
class StepCacheStats:
    """How many transformer passes the step cache was asked about, and how many it answered from cache.

    A pass is one transformer call: one per step with `cfg_batch`, else two (conditional and not).
    Counted per generation (`generate` resets it).
    """

    passes: int = 0
    skipped: int = 0

    @property
    def skipped_fraction(self) -> float:
        """Share of passes whose blocks after the first were not computed."""
        return self.skipped / self.passes if self.passes else 0.0

    def reset(self) -> None:
        """Start counting a new generation."""
        self.passes = 0
        self.skipped = 0


def resolve_dtype(options: InferenceOptions, device: torch.device) -> torch.dtype:
    """The compute dtype `options.dtype` names; "auto" is bfloat16 on CUDA and float32 elsewhere."""
    if options.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[options.dtype]


def apply_inference_options(
    pipe: DiffusionPipeline, options: InferenceOptions, device: torch.device, dtype: torch.dtype
) -> StepCacheStats | None:
    """Set the attention backend, step cache, compilation and VAE tiling that `options` ask for.

    Call once on a freshly loaded pipeline. Returns the step cache's counters when it is on.
    Raises `ModelError` for a switch that cannot work here (an attention backend this device lacks).
    """
    components: dict[str, Any] = pipe.components
    transformer = components.get("transformer")
    stats: StepCacheStats | None = None
    if options.attention_backend is not None:
        if transformer is None:
            raise ModelError(f"{type(pipe).__name__} has no transformer to set an attention backend on")
        set_attention_backend(transformer, options.attention_backend, device, dtype)
    if options.step_cache == "first_block":
        if transformer is None or not hasattr(transformer, "enable_cache"):
            raise ModelError(f"{type(pipe).__name__} has no transformer that supports step caching")
        try:
            transformer.enable_cache(FirstBlockCacheConfig(threshold=options.step_cache_threshold))
        except ValueError as exc:
            raise ModelError(f"the step cache does not apply to {type(transformer).__name__}: {exc}") from exc
        stats = _count_cache_decisions(transformer)
    if options.compile == "regional":
        if transformer is None:
            raise ModelError(f"{type(pipe).__name__} has no transformer to compile")
        try:
            # The step cache decides in Python (`.item()`) inside the first block: a graph break.
            transformer.compile_repeated_blocks(fullgraph=options.step_cache is None)
        except ValueError as exc:  # a transformer that names no repeated blocks (CogVideoX)
            raise ModelError(
                f"regional compile does not apply to {type(transformer).__name__}: {exc}"
            ) from exc
    if options.vae_tiling:
        vae = components.get("vae")
        if vae is None or not hasattr(vae, "enable_tiling"):
            raise ModelError(f"{type(pipe).__name__} has no VAE that supports tiling")
        vae.enable_tiling()
    return stats


def set_attention_backend(
    transformer: torch.nn.Module, backend: str, device: torch.device, dtype: torch.dtype
) -> None:
    """Route `transformer`'s attention through `backend` after checking it runs on `device` in `dtype`.

    Raises `ModelError` naming the backend and why (unknown name, missing package, or a kernel that
    does not run here, such as cuDNN attention on the CPU or flash attention in float32).
    """
    known = sorted(name.value for name in AttentionBackendName)
    if backend not in known:
        raise ModelError(f"unknown attention backend {backend!r}; diffusers knows: {', '.join(known)}")
    check_attention_backend(backend, device, dtype)
    # set_attention_backend also makes the backend the process-wide default; keep that as it was.
    previous = _AttentionBackendRegistry._active_backend
    try:
        transformer.set_attention_backend(backend)  # type: ignore[operator]
    except Exception as exc:
        raise ModelError(f"attention backend {backend!r} is not usable: {exc}") from exc
    finally:
        _AttentionBackendRegistry.set_active_backend(previous)
    logger.info("attention backend %s on %s (%s)", backend, device, dtype)


def check_attention_backend(backend: str, device: torch.device, dtype: torch.dtype) -> None:
    """Run one small attention call through `backend`; raise `ModelError` if it fails."""
    shape = (1, 16, 2, 64)  # (batch, tokens, heads, head dim): a shape every kernel accepts
    try:
        _check_attention_backend_requirements(AttentionBackendName(backend))  # names the missing package
        query, key, value = (torch.randn(shape, device=device, dtype=dtype) for _ in range(3))
        with torch.no_grad():
            dispatch_attention_fn(query, key, value, backend=AttentionBackendName(backend))
    except Exception as exc:
        raise ModelError(
            f"attention backend {backend!r} does not run on {device.type} in {dtype}: {exc}"
        ) from exc


def reset_step_cache(pipe: DiffusionPipeline, stats: StepCacheStats | None) -> None:
    """Forget cached residuals and counts, so a generation never reuses a canceled one's state."""
    if stats is None:
        return  # no step cache: nothing to forget
    stats.reset()
    clear_step_cache(pipe)


def clear_step_cache(pipe: DiffusionPipeline) -> None:
    """Forget the cached residuals (not the counts): the next pass is computed in full."""
    transformer = pipe.components.get("transformer")
    if transformer is not None and hasattr(transformer, "_reset_stateful_cache"):
        transformer._reset_stateful_cache()


def _count_cache_decisions(transformer: torch.nn.Module) -> StepCacheStats:
    """Wrap the first-block cache's decision so each pass and each skip is counted."""
    stats = StepCacheStats()
    head_hook = None
    for module in transformer.modules():
        registry = getattr(module, "_diffusers_hook", None)
        if isinstance(registry, HookRegistry) and registry.get_hook(_FBC_LEADER_BLOCK_HOOK) is not None:
            head_hook = registry.get_hook(_FBC_LEADER_BLOCK_HOOK)
            break
    if head_hook is None:
        raise ModelError("the first-block cache found no transformer blocks to cache")
    decide = head_hook._should_compute_remaining_blocks  # type: ignore[attr-defined]

    @torch.compiler.disable  # counting is Python state, kept outside any compiled graph
    def counted(residual: torch.Tensor) -> bool:
        compute = bool(decide(residual))
        stats.passes += 1
        stats.skipped += not compute
        return compute

    head_hook._should_compute_remaining_blocks = counted  # type: ignore[attr-defined]
    return stats
