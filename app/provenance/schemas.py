"""What `POST /v1/provenance/verify` and `kinema verify` report."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class ManifestOut(BaseModel):
    """The video's C2PA manifest: whether it is there and valid, and what it says."""

    present: bool
    valid: bool
    validation_state: str | None
    problems: list[str]
    issuer: str | None
    claim_generator: str | None
    signed_at: str | None
    actions: list[dict[str, Any]]
    ingredients: list[dict[str, Any]]
    job_id: str | None
    model: str | None


class WatermarkOut(BaseModel):
    """The invisible watermark: found or not, its payload, and what it names on this deployment."""

    found: bool
    payload: str | None  # 16 hex digits
    confidence: float
    frames: int
    # True when the payload's issuer hash is this deployment's.
    issued_here: bool
    job_id: str | None
    api_key_id: str | None


class VerifyOut(BaseModel):
    object: Literal["provenance.verification"] = "provenance.verification"
    c2pa: ManifestOut
    watermark: WatermarkOut
