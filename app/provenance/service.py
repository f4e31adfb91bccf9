"""Verify a video: its C2PA manifest and its invisible watermark, traced to a job on this deployment."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.jobs.models import Job
from app.provenance.schemas import ManifestOut, VerifyOut, WatermarkOut
from model.invisible_watermark import Detection, Payload, detect_file, short_hash
from model.provenance import read_manifest


def find_job(session: Session, payload: Payload) -> Job | None:
    """The job the payload names: an index lookup on the job hash, then the key hash checked.

    Two jobs share a 32-bit job hash about once in 4 billion pairs; the 16-bit key hash must match too,
    and if two jobs still do, the newest is named.
    """
    candidates = session.scalars(
        select(Job).where(Job.watermark_job_hash == payload.job).order_by(Job.id.desc())
    )
    return next((job for job in candidates if short_hash(job.api_key_id, 16) == payload.key), None)


def trace(session: Session | None, settings: Settings, detection: Detection) -> WatermarkOut:
    """The watermark report, with the job and key it names when this deployment issued it."""
    payload = detection.payload
    issued_here = payload is not None and payload.issuer == short_hash(settings.watermark_issuer, 16)
    job = find_job(session, payload) if session is not None and payload is not None and issued_here else None
    return WatermarkOut(
        found=payload is not None,
        payload=payload.hex if payload is not None else None,
        confidence=detection.confidence,
        frames=detection.frames,
        issued_here=issued_here,
        job_id=job.id if job is not None else None,
        api_key_id=job.api_key_id if job is not None else None,
    )


def verify_file(session: Session | None, settings: Settings, path: Path) -> VerifyOut:
    """Read the C2PA manifest and the watermark of the video at `path`.

    Without a session the watermark's job is not looked up.
    Raises ValueError when the file is not a video PyAV can decode.
    """
    manifest = read_manifest(path)
    try:
        detection = detect_file(path)
    except (OSError, ValueError, IndexError) as exc:
        raise ValueError(f"not a readable video: {exc}") from exc
    return VerifyOut(
        c2pa=ManifestOut.model_validate(dataclasses.asdict(manifest)),
        watermark=trace(session, settings, detection),
    )
