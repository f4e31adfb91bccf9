"""KINEMA_MODELS entries: where a served model lives and the options a deployment sets for it.

An entry is a path, or `{"path": ..., "options": {...}}`. The gateway applies the request defaults and
the frame cap to the model's spec (`app.served_models.served_spec`); the worker applies the loading
switches (`worker.runtime.inference_options`). Pure data: no torch.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError


class ModelOptions(BaseModel):
    """One model's overrides; None (or absent) keeps the registry's value or the deployment-wide setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # What a request that does not say gets.
    default_steps: int | None = Field(default=None, ge=1)
    default_guidance: float | None = Field(default=None, ge=0)
    default_fps: int | None = Field(default=None, ge=1)
    # The most frames one request may ask for, chained passes included: a cap below the model's own.
    max_frames_total: int | None = Field(default=None, ge=1)
    # Worker: the compute dtype (None: KINEMA_DTYPE), diffusers' model CPU offload (GPU only: each
    # component moves to the GPU while it runs), and VAE tiling (None: KINEMA_VAE_TILING).
    dtype: Literal["auto", "bf16", "fp16", "fp32"] | None = None
    cpu_offload: StrictBool = False
    enable_vae_tiling: StrictBool | None = None


class ServedModel(BaseModel):
    """A KINEMA_MODELS entry: a local diffusers directory (or `builtin:tiny-wan`) and its options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(min_length=1)
    options: ModelOptions = ModelOptions()


def parse_models(value: object) -> dict[str, ServedModel]:
    """KINEMA_MODELS as id -> entry, from `id=path,id2=path2`, a JSON object, or a dict.

    Raises ValueError naming the model id and the key at fault (`KINEMA_MODELS: 'mochi': options.dtype:
    ...`), so a bad deployment fails when its settings load, not on its first request.
    """
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("{"):
            pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
            if any(len(pair) != 2 for pair in pairs):
                raise ValueError("KINEMA_MODELS: use id=path,id2=path2 or a JSON object")
            value = {key.strip(): path.strip() for key, path in pairs}
        else:
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"KINEMA_MODELS is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError("KINEMA_MODELS: use id=path,id2=path2 or a JSON object")
    models: dict[str, ServedModel] = {}
    for model_id, entry in value.items():
        if isinstance(entry, ServedModel):
            models[model_id] = entry
            continue
        try:
            models[model_id] = ServedModel.model_validate(
                {"path": entry} if isinstance(entry, str) else entry
            )
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, error['loc'])) or 'entry'}: {error['msg']}" for error in exc.errors()
            )
            raise ValueError(f"KINEMA_MODELS: {model_id!r}: {problems}") from None
    return models
