"""What `POST /v1/provenance/verify` and `kinema verify` report."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class IngredientOut(BaseModel):
    """A file the video was made from: the parent video of an edit, remix or extension, or an input image."""

    title: str | None
    format: str | None
    relationship: str | None  # parentOf (edited from it) or inputTo (made from it)
    has_manifest: bool
    # Its own manifest's validity when the video was signed; null when it had none.
    valid: bool | None
    problems: list[str]
    claim_generator: str | None
    job_id: str | None  # the Kinema job that made it, from its own manifest
    model: str | None


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
    ingredients: list[IngredientOut]
    job_id: str | None
    model: str | None
    parent_job_id: str | None  # the job this one edited, remixed or extended


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
