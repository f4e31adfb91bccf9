"""One run of a job: claim it, generate, encode with the visible mark, upload, record the outcome."""

from __future__ import annotations

import gc
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import torch
from sqlalchemy.exc import SQLAlchemyError

from app.config import Settings, get_settings
from app.db import session_scope
from app.jobs import runs
from app.jobs.eta import Timing, load_timing, record_timing, work_units
from app.jobs.live import get_progress_channel
from app.jobs.models import Job, spritesheet_key_for
from app.jobs.states import JobStatus
from app.storage import StorageError, get_storage
from model.config import GenerationCanceled, GenerationRequest, ModelError, Phase
from model.export import render_mp4
from model.generate import generate
from model.registry import get_spec
from model.spritesheet import render_spritesheet
from worker import runtime
from worker.cancel import CancelWatch
from worker.progress import Heartbeat, ProgressReporter, RunLost
from worker.provenance import mark_frames, sign_video
from worker.timing import RunClock

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
    parent_id: str | None

    @classmethod
    def from_row(cls, job: Job) -> JobSpec:
        return cls(**{name: getattr(job, name) for name in cls.__dataclass_fields__})

    @property
    def video_key(self) -> str:
        return f"videos/{self.api_key_id}/{self.id}.mp4"

    @property
    def thumbnail_key(self) -> str:
        return f"videos/{self.api_key_id}/{self.id}.jpg"

    @property
    def spritesheet_key(self) -> str:
        return spritesheet_key_for(self.video_key)


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
    cancel = CancelWatch(job_id, get_progress_channel(), interval_s=settings.cancel_check_interval_s)
    stopped = False
    with Heartbeat(run, interval_s=max(0.5, settings.job_lease_s / 4)) as heartbeat:

        def should_stop() -> bool:
            return heartbeat.lost.is_set() or cancel()

        try:
            _run(spec, run, settings, should_stop)
        except RunLost:
            log.warning("job %s was taken over by another worker; this run stops", job_id)
        except GenerationCanceled:
            stopped = True
            if heartbeat.lost.is_set():
                log.warning("job %s was taken over by another worker; this run stops", job_id)
            else:
                _cancel(run)
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
    if stopped:
        _release_memory()
    return result


def _announce(job_id: str, status: JobStatus) -> None:
    """Tell the job's event streams it finished, so they end now rather than at their next poll."""
    channel = get_progress_channel()
    if channel is not None:
        channel.announce(job_id, status)


def _fail(run: runs.Run, code: str, message: str) -> None:
    with session_scope() as session:
        owned = runs.fail(session, run, code=code, message=message)
    if owned:
        _announce(run.job_id, JobStatus.FAILED)


def _cancel(run: runs.Run) -> None:
    with session_scope() as session:
        owned = runs.cancel(session, run)
    if owned:
        _announce(run.job_id, JobStatus.CANCELED)
        log.info("job %s canceled; nothing was stored", run.job_id)


def _release_memory() -> None:
    """Free what the stopped generation held (latents, decoder caches) before the next job loads."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _learn_timing(model: str, observed: Timing | None) -> None:
    """Fold a finished run into the model's ETA averages; an estimate is never worth failing a job."""
    if observed is None:
        return
    try:
        with session_scope() as session:
            record_timing(
                session,
                model,
                step_s_per_unit=observed.step_s_per_unit,
                tail_s_per_unit=observed.tail_s_per_unit,
            )
    except SQLAlchemyError as exc:
        log.warning("recording the timing of %s failed: %s", model, exc)


def _run(spec: JobSpec, run: runs.Run, settings: Settings, should_stop: Callable[[], bool]) -> None:
    with session_scope() as session:
        timing = load_timing(session, spec.model)
    clock = RunClock(
        units=work_units(spec.width, spec.height, spec.num_frames),
        steps=spec.num_inference_steps,
        timing=timing,
    )
    reporter = ProgressReporter(
        run, get_progress_channel(), write_interval_s=settings.progress_write_interval_s, clock=clock
    )
    reporter.report(Phase.LOADING, 0, 1)
    loaded = runtime.get_model(spec.model)
    reporter.report(Phase.LOADING, 1, 1)
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
    frames = generate(request, reporter.on_step, should_stop, model=loaded)
    with tempfile.TemporaryDirectory(prefix="kinema-") as tmp:
        video_path, thumb_path = Path(tmp) / "video.mp4", Path(tmp) / "thumbnail.jpg"
        sprites_path = Path(tmp) / "sprites.jpg"
        try:
            info = render_mp4(
                mark_frames(
                    islice(frames, spec.num_frames),
                    settings,
                    key_id=spec.api_key_id,
                    job_id=spec.id,
                    fps=spec.fps,
                ),
                video_path,
                fps=spec.fps,
                thumbnail_path=thumb_path,
                thumbnail_index=spec.num_frames // 2,
                encoder=settings.video_encoder,
            )
        except GenerationCanceled:
            reporter.flush()  # the row shows the step it stopped at
            raise
        finally:
            frames.close()
        info = sign_video(
            video_path, info, settings, job_id=spec.id, model_id=spec.model, parent_id=spec.parent_id
        )
        # The /v1/videos `spritesheet` variant: a grid of frames read back from the encoded MP4.
        render_spritesheet(video_path, info.frames, sprites_path)
        reporter.report(Phase.ENCODING, 1, 1)
        if should_stop():
            raise GenerationCanceled  # the last moment a cancel can keep the output from being stored
        reporter.report(Phase.UPLOADING, 0, 2)
        storage = get_storage()
        storage.put_file(spec.thumbnail_key, thumb_path, "image/jpeg")
        storage.put_file(spec.spritesheet_key, sprites_path, "image/jpeg")
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
    _announce(spec.id, JobStatus.SUCCEEDED)
    _learn_timing(spec.model, clock.observed())
    log.info("job %s succeeded: %d frames, %d bytes", spec.id, info.frames, info.bytes)
