"""What the worker adds to every video: the visible and invisible watermarks, and a signed C2PA manifest."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from app import __version__
from app.config import Settings
from app.provenance.certs import ensure_signing_chain
from model.export import VideoInfo
from model.invisible_watermark import InvisibleWatermark, Payload
from model.provenance import Creation, Ingredient, sign_mp4
from model.watermark import VisibleWatermark


def visible_watermark(settings: Settings, fps: int) -> VisibleWatermark | None:
    """The deployment's visible mark for a video at `fps`, or None when it is switched off."""
    if not settings.watermark_enabled:
        return None
    interval = settings.watermark_move_interval_s
    move_every = max(1, round(interval * fps)) if interval else 0
    return VisibleWatermark(
        text=settings.watermark_text,
        opacity=settings.watermark_opacity,
        position=settings.watermark_position,
        scale=settings.watermark_scale,
        move_every=move_every,
    )


def mark_frames(
    frames: Iterable[np.ndarray], settings: Settings, *, key_id: str, job_id: str, fps: int
) -> Iterator[np.ndarray]:
    """Each frame with the visible label, then the invisible payload naming this job over the whole frame."""
    visible = visible_watermark(settings, fps)
    invisible = (
        InvisibleWatermark(Payload.for_job(settings.watermark_issuer, key_id, job_id))
        if settings.invisible_watermark_enabled
        else None
    )
    for index, frame in enumerate(frames):
        if visible is not None:
            frame = visible.apply(frame, index)
        if invisible is not None:
            frame = invisible.apply(frame)
        yield frame


# Input images are ingredients the video was made from (inputTo); anything else is a parent video.
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})


def source_ingredient(parent_video: Path, parent_id: str | None) -> Ingredient:
    """The C2PA ingredient for the file a job started from: a parent job's video, an uploaded source
    video, or an input image."""
    if parent_video.suffix.lower() in _IMAGE_SUFFIXES:
        return Ingredient(parent_video, parent_video.name, relationship="inputTo")
    title = f"{parent_id}.mp4" if parent_id else parent_video.name
    return Ingredient(parent_video, title, relationship="parentOf")


def sign_video(
    path: Path,
    info: VideoInfo,
    settings: Settings,
    *,
    job_id: str,
    model_id: str,
    parent_id: str | None,
    parent_video: Path | None = None,
) -> VideoInfo:
    """Embed the signed C2PA manifest into the MP4 at `path`; its facts, with the new size and digest.

    `parent_video` is the file the job started from (the parent job's MP4 for an extension or a remix,
    the source video of an edit, or an input image): it is recorded as the manifest's ingredient, with
    its own manifest when it has one, and the actions say the video was opened from it and edited.
    """
    chain = ensure_signing_chain(settings)
    signed = path.with_name(f"signed-{path.name}")
    creation = Creation(
        generator_version=__version__,
        model_id=model_id,
        job_id=job_id,
        created_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        parent_job_id=parent_id,
    )
    sign_mp4(
        path,
        signed,
        creation,
        cert_pem=chain.cert.read_bytes(),
        key_pem=chain.key.read_bytes(),
        tsa_url=settings.c2pa_tsa_url,
        ingredient=source_ingredient(parent_video, parent_id) if parent_video is not None else None,
    )
    os.replace(signed, path)
    data = path.read_bytes()
    # The job's bytes and sha256 describe the file users download: the signed one.
    return dataclasses.replace(info, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
