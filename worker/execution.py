"""One run of a job: claim it, generate, encode with the visible mark, upload, record the outcome."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from app.config import Settings, get_settings
from app.db import session_scope
from app.jobs import runs
from app.jobs.live import get_progress_channel
from app.jobs.models import Job
from app.storage import StorageError, get_storage
from model.config import GenerationCanceled, GenerationRequest, ModelError, Phase
from model.export import render_mp4
from model.generate import generate
from model.registry import get_spec
from model.watermark import VisibleWatermark
from worker import runtime
from worker.progress import Heartbeat, ProgressReporter, RunLost

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What a run needs from the job row, read once after the claim."""

    id: str
    api_key_id: str
    model: str
    prompt: str
    negative_prompt: str
    duration_s: float
    width: int
    height: int
    fps: int
    num_frames: int
    seed: int
    num_inference_steps: int
    guidance_scale: float

    @classmethod
    def from_row(cls, job: Job) -> JobSpec:
        return cls(**{name: getattr(job, name) for name in cls.__dataclass_fields__})

    @property
    def video_key(self) -> str:
        return f"videos/{self.api_key_id}/{self.id}.mp4"

    @property
    def thumbnail_key(self) -> str:
        return f"videos/{self.api_key_id}/{self.id}.jpg"


def execute(job_id: str) -> runs.ClaimResult:
    """Run `job_id` if this worker can claim it; returns what the claim found."""
    settings = get_settings()
    with session_scope() as session:
        result, run = runs.claim(session, job_id, worker=runtime.worker_name(), lease_s=settings.job_lease_s)
        if run is None:
            log.info("job %s not claimed: %s", job_id, result.value)
            return result
        row = session.get(Job, job_id)
        assert row is not None  # we just claimed it
        spec = JobSpec.from_row(row)
    with Heartbeat(run, interval_s=max(0.5, settings.job_lease_s / 4)) as heartbeat:
        try:
            _run(spec, run, settings, heartbeat)
        except RunLost:
            log.warning("job %s was taken over by another worker; this run stops", job_id)
        except GenerationCanceled:
            if heartbeat.lost.is_set():
                log.warning("job %s was taken over by another worker; this run stops", job_id)
        except StorageError as exc:
            _fail(run, "storage_unavailable", f"Storing the video failed: {exc}")
        except ModelError as exc:
            _fail(run, "generation_failed", str(exc))
        except MemoryError:
            _fail(run, "out_of_memory", "The worker ran out of memory; try a smaller resolution or duration.")
        except Exception as exc:
            log.exception("job %s failed", job_id)
            code = "out_of_memory" if "out of memory" in str(exc).lower() else "internal_error"
            _fail(run, code, f"{type(exc).__name__}: {exc}")
    return result


def _fail(run: runs.Run, code: str, message: str) -> None:
    with session_scope() as session:
        runs.fail(session, run, code=code, message=message)


def _run(spec: JobSpec, run: runs.Run, settings: Settings, heartbeat: Heartbeat) -> None:
    reporter = ProgressReporter(
        run, get_progress_channel(), write_interval_s=settings.progress_write_interval_s
    )
    reporter.report(Phase.LOADING, 0, 1)
    loaded = runtime.get_model(spec.model)
    request = GenerationRequest(
        prompt=spec.prompt,
        negative_prompt=spec.negative_prompt,
        width=spec.width,
        height=spec.height,
        # The model's frame rule may ask for a few frames more than the video keeps.
        num_frames=get_spec(spec.model).num_frames_for(spec.duration_s, spec.fps),
        fps=spec.fps,
        seed=spec.seed,
        num_inference_steps=spec.num_inference_steps,
        guidance_scale=spec.guidance_scale,
        model_id=spec.model,
    )
    watermark = VisibleWatermark(text=settings.watermark_text) if settings.watermark_enabled else None
    frames = generate(request, reporter.on_step, heartbeat.lost.is_set, model=loaded)
    with tempfile.TemporaryDirectory(prefix="kinema-") as tmp:
        video_path, thumb_path = Path(tmp) / "video.mp4", Path(tmp) / "thumbnail.jpg"
        try:
            info = render_mp4(
                islice(frames, spec.num_frames),
                video_path,
                fps=spec.fps,
                thumbnail_path=thumb_path,
                thumbnail_index=spec.num_frames // 2,
                watermark=watermark,
            )
        finally:
            frames.close()
        reporter.report(Phase.ENCODING, 1, 1)
        reporter.report(Phase.UPLOADING, 0, 2)
        storage = get_storage()
        storage.put_file(spec.thumbnail_key, thumb_path, "image/jpeg")
        reporter.report(Phase.UPLOADING, 1, 2)
        storage.put_file(spec.video_key, video_path, "video/mp4")
    with session_scope() as session:
        owned = runs.succeed(
            session,
            run,
            video_key=spec.video_key,
            thumbnail_key=spec.thumbnail_key,
            output_frames=info.frames,
            output_duration_s=info.duration,
            output_bytes=info.bytes,
            output_sha256=info.sha256,
        )
    if not owned:
        raise RunLost(spec.id)
    log.info("job %s succeeded: %d frames, %d bytes", spec.id, info.frames, info.bytes)
