"""Each job kind's inputs: what the generation is conditioned on, and what comes before it in the MP4.

- text: nothing.
- image: the input image (`input_key`): the first frame.
- extend: the parent job's MP4: its last frames are the context, and all of its frames come first in
  the output, then the new ones.
- edit: the input video (`input_key`), or the parent job's MP4; remix: the parent job's MP4. Either is
  the source, re-noised by the job's `strength`.
Uploaded inputs (not parent videos, which Kinema made) pass `check_input_frames` before anything runs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.config import Settings
from app.moderation.media import check_input_frames
from app.storage import Storage
from model.conditioning import CONTEXT_FRAMES, fit_frame
from model.config import ModelError
from model.invisible_watermark import InvisibleWatermark, Payload
from worker.provenance import visible_watermark
from worker.sources import InputUnreadable, decode_to_file, fetch, read_image, video_frames

KINDS = ("text", "image", "extend", "edit", "remix")


@dataclass(frozen=True, slots=True)
class JobInputs:
    """A run's conditioning, and the files it came from.

    `lead` is the parent video an extension continues: its frames (fitted to the job's size) go into
    the MP4 before the new ones; `lead_frames` counts them. `ingredient` is the file the C2PA manifest
    records the video was made from.
    """

    image: np.ndarray | None = None
    context: np.ndarray | None = None
    source: np.ndarray | None = None
    lead: Path | None = None
    lead_frames: int = 0
    ingredient: Path | None = None


@dataclass(frozen=True, slots=True)
class InputRefs:
    """Where a job's inputs are: the row's fields, and its parent's video (when it has a parent)."""

    kind: str
    input_key: str | None
    input_type: str | None
    parent_video_key: str | None
    width: int
    height: int
    fps: int
    num_frames: int


def load_inputs(refs: InputRefs, settings: Settings, storage: Storage, directory: Path) -> JobInputs:
    """Fetch, decode and check what the job's kind needs, into `directory`.

    Raises `InputUnreadable` (a missing or corrupt input or parent), `StorageError`, the moderation
    errors of `check_input_frames`, and `ModelError` for a kind it does not know.
    """
    if refs.kind not in KINDS:
        raise ModelError(f"unknown job kind {refs.kind!r}")
    if refs.kind == "text":
        return JobInputs()
    if refs.kind == "image":
        path = fetch(storage, _required(refs.input_key, "input image"), directory, what="input image")
        image = read_image(path)
        check_input_frames([image], settings, param="image")
        return JobInputs(image=image, ingredient=path)
    if refs.kind == "extend":
        path = fetch(
            storage, _required(refs.parent_video_key, "parent video"), directory, what="parent video"
        )
        tail: deque[np.ndarray] = deque(maxlen=CONTEXT_FRAMES)
        count = 0
        for frame in video_frames(path, what="parent video"):
            tail.append(fit_frame(frame, refs.width, refs.height))
            count += 1
        if not tail:
            raise InputUnreadable("The parent video has no frames.")
        return JobInputs(context=np.stack(tail), lead=path, lead_frames=count, ingredient=path)
    # edit and remix: an uploaded video, else the parent's.
    uploaded = refs.input_type == "video" and refs.input_key is not None
    what = "input video" if uploaded else "parent video"
    key = refs.input_key if uploaded else refs.parent_video_key
    path = fetch(storage, _required(key, what), directory, what=what)
    source = decode_to_file(
        video_frames(path, what=what, fps=refs.fps),
        directory / "source.rgb",
        width=refs.width,
        height=refs.height,
        limit=refs.num_frames,
        what=what,
    )
    if uploaded:
        check_input_frames(iter(source), settings, param="video")
    return JobInputs(source=source, ingredient=path)


def _required(key: str | None, what: str) -> str:
    if key is None:
        raise InputUnreadable(f"The job names no {what}.")
    return key


def extension_frames(
    lead: Path,
    new: Iterable[np.ndarray],
    settings: Settings,
    *,
    key_id: str,
    job_id: str,
    width: int,
    height: int,
    fps: int,
) -> Iterator[np.ndarray]:
    """An extension's MP4 frames, marked: the parent video's frames, then the new ones.

    As `worker.provenance.mark_frames`, except that the parent's frames carry its visible label already
    and get only the invisible payload naming this job (written over the parent's: the marks are
    quantised, so the new one replaces the old), and that the new frames' label continues the video's
    frame count (a moving label keeps its rhythm across the join).
    """
    visible = visible_watermark(settings, fps)
    invisible = (
        InvisibleWatermark(Payload.for_job(settings.watermark_issuer, key_id, job_id))
        if settings.invisible_watermark_enabled
        else None
    )
    index = 0
    for frame in video_frames(lead, what="parent video"):
        frame = fit_frame(frame, width, height)
        yield invisible.apply(frame) if invisible is not None else frame
        index += 1
    for frame in new:
        if visible is not None:
            frame = visible.apply(frame, index)
        if invisible is not None:
            frame = invisible.apply(frame)
        yield frame
        index += 1
