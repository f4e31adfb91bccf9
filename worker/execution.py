"""One run of a job: claim it, fetch its inputs, generate, encode with the marks, upload, record it."""

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
from sqlalchemy.orm import Session

from app.config import Settings, get_settings
from app.db import session_scope
from app.errors import APIError
from app.jobs import runs
from app.jobs.eta import Timing, load_timing, record_timing, work_units
from app.jobs.live import get_progress_channel
from app.jobs.models import Job, spritesheet_key_for
from app.jobs.states import JobStatus
from app.storage import StorageError, get_storage
from model.audio import LoadedAudioModel
from model.config import DEFAULT_STRENGTH, GenerationCanceled, GenerationRequest, ModelError, Phase
from model.export import AudioClip, VideoInfo, render_mp4
from model.generate import generate
from model.pipeline import LoadedModel
from model.spritesheet import render_spritesheet
from worker import runtime
from worker.cancel import CancelWatch
from worker.modes import InputRefs, JobInputs, extension_frames, load_inputs
from worker.progress import Heartbeat, ProgressReporter, RunLost
from worker.provenance import mark_frames, sign_video
from worker.retry import with_db_retry
from worker.soundtrack import make_soundtrack
from worker.sources import InputUnreadable
from worker.timing import RunClock
from worker.upload import Output, store_outputs

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
    kind: str
    input_key: str | None
    input_type: str | None
    strength: float | None
    # The parent job's MP4 (extend, remix, an edit of a job), read from its row at the claim.
    parent_video_key: str | None = None
    # A soundtrack, from `audio_prompt` or else the prompt.
    audio: bool = False
    audio_prompt: str | None = None

    @classmethod
    def from_row(cls, job: Job, parent: Job | None = None) -> JobSpec:
        names = [name for name in cls.__dataclass_fields__ if name != "parent_video_key"]
        return cls(
            **{name: getattr(job, name) for name in names},
            parent_video_key=parent.video_key if parent is not None else None,
        )

    @property
    def input_refs(self) -> InputRefs:
        return InputRefs(
            kind=self.kind,
            input_key=self.input_key,
            input_type=self.input_type,
            parent_video_key=self.parent_video_key,
            width=self.width,
            height=self.height,
            fps=self.fps,
            num_frames=self.num_frames,
        )

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
    result, run = with_db_retry(
        lambda session: runs.claim(
            session,
            job_id,
            worker=runtime.worker_name(),
            lease_s=settings.job_lease_s,
            max_attempts=settings.job_max_attempts,
        ),
        what=f"claiming job {job_id}",
    )
    if run is None:
        log.info("job %s not claimed: %s", job_id, result.value)
        return result
    spec = with_db_retry(lambda session: _read_spec(session, job_id), what=f"reading job {job_id}")
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
        except InputUnreadable as exc:
            _fail(run, "input_unreadable", str(exc))
        except APIError as exc:  # the input check refused the input, or its classifier is down
            _fail(run, exc.code, exc.message)
        except StorageError as exc:
            _fail(run, "storage_unavailable", f"Storage failed: {exc}")
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


def _read_spec(session: Session, job_id: str) -> JobSpec:
    """What the run needs from the claimed job's row (and its parent's)."""
    row = session.get(Job, job_id)
    assert row is not None  # we just claimed it
    parent = session.get(Job, row.parent_id) if row.parent_id else None
    return JobSpec.from_row(row, parent)


def _fail(run: runs.Run, code: str, message: str) -> None:
    owned = with_db_retry(
        lambda session: runs.fail(session, run, code=code, message=message), what=f"failing job {run.job_id}"
    )
    if owned:
        _announce(run.job_id, JobStatus.FAILED)


def _cancel(run: runs.Run) -> None:
    owned = with_db_retry(lambda session: runs.cancel(session, run), what=f"canceling job {run.job_id}")
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
    timing = with_db_retry(lambda session: load_timing(session, spec.model), what="reading timings")
    clock = RunClock(
        units=work_units(spec.width, spec.height, spec.num_frames),
        steps=spec.num_inference_steps,
        timing=timing,
    )
    reporter = ProgressReporter(
        run,
        get_progress_channel(),
        write_interval_s=settings.progress_write_interval_s,
        clock=clock,
        audio=spec.audio,
    )
    reporter.report(Phase.LOADING, 0, 1)
    loaded = runtime.get_model(spec.model)
    audio_model = runtime.get_audio_model() if spec.audio else None
    with tempfile.TemporaryDirectory(prefix="kinema-") as tmp:
        inputs = load_inputs(spec.input_refs, settings, get_storage(), Path(tmp))
        reporter.report(Phase.LOADING, 1, 1)
        soundtrack = (
            _soundtrack(spec, inputs, audio_model, settings, reporter, should_stop)
            if audio_model is not None
            else None
        )
        info = _generate_and_store(
            spec, inputs, settings, reporter, should_stop, Path(tmp), loaded, soundtrack
        )
    owned = with_db_retry(
        lambda session: runs.succeed(
            session,
            run,
            video_key=spec.video_key,
            thumbnail_key=spec.thumbnail_key,
            output_frames=info.frames,
            output_duration_s=info.duration,
            output_bytes=info.bytes,
            output_sha256=info.sha256,
            output_audio_codec=info.audio.codec if info.audio is not None else None,
            output_audio_sample_rate=info.audio.sample_rate if info.audio is not None else None,
            output_audio_channels=info.audio.channels if info.audio is not None else None,
        ),
        what=f"recording job {spec.id}",
    )
    if not owned:
        raise RunLost(spec.id)
    _announce(spec.id, JobStatus.SUCCEEDED)
    _learn_timing(spec.model, clock.observed())
    log.info("job %s succeeded: %d frames, %d bytes", spec.id, info.frames, info.bytes)


def _soundtrack(
    spec: JobSpec,
    inputs: JobInputs,
    model: LoadedAudioModel,
    settings: Settings,
    reporter: ProgressReporter,
    should_stop: Callable[[], bool],
) -> AudioClip:
    """The job's sound, for the whole MP4 (an extension's parent part included), before any frame."""
    try:
        return make_soundtrack(
            model,
            prompt=spec.audio_prompt or spec.prompt,
            seed=spec.seed,
            fps=spec.fps,
            frames=spec.num_frames,
            lead=inputs.lead,
            lead_frames=inputs.lead_frames,
            steps=settings.audio_steps or None,
            on_step=reporter.on_step,
            should_stop=should_stop,
        )
    except GenerationCanceled:
        reporter.flush()  # the row shows the step it stopped at
        raise


def _generate_and_store(
    spec: JobSpec,
    inputs: JobInputs,
    settings: Settings,
    reporter: ProgressReporter,
    should_stop: Callable[[], bool],
    tmp: Path,
    loaded: LoadedModel,
    soundtrack: AudioClip | None = None,
) -> VideoInfo:
    """Generate, encode with the marks (and the soundtrack, if any), sign, and upload the video,
    thumbnail and spritesheet."""
    request = GenerationRequest(
        prompt=spec.prompt,
        negative_prompt=spec.negative_prompt,
        width=spec.width,
        height=spec.height,
        # The model's frame rule may ask for a few frames more than the video keeps.
        num_frames=loaded.spec.num_frames_for(spec.duration_s, spec.fps),
        fps=spec.fps,
        seed=spec.seed,
        num_inference_steps=spec.num_inference_steps,
        guidance_scale=spec.guidance_scale,
        model_id=spec.model,
        image=inputs.image,
        context=inputs.context,
        source=inputs.source,
        strength=spec.strength if spec.strength is not None else DEFAULT_STRENGTH,
    )
    frames = generate(request, reporter.on_step, should_stop, model=loaded)
    video_path, thumb_path = tmp / "video.mp4", tmp / "thumbnail.jpg"
    sprites_path = tmp / "sprites.jpg"
    new = islice(frames, spec.num_frames)
    if inputs.lead is not None:
        marked = extension_frames(
            inputs.lead,
            new,
            settings,
            key_id=spec.api_key_id,
            job_id=spec.id,
            width=spec.width,
            height=spec.height,
            fps=spec.fps,
        )
    else:
        marked = mark_frames(new, settings, key_id=spec.api_key_id, job_id=spec.id, fps=spec.fps)
    try:
        info = render_mp4(
            marked,
            video_path,
            fps=spec.fps,
            thumbnail_path=thumb_path,
            thumbnail_index=(inputs.lead_frames + spec.num_frames) // 2,
            encoder=settings.video_encoder,
            audio=soundtrack,
        )
    except GenerationCanceled:
        reporter.flush()  # the row shows the step it stopped at
        raise
    finally:
        frames.close()
    info = sign_video(
        video_path,
        info,
        settings,
        job_id=spec.id,
        model_id=spec.model,
        parent_id=spec.parent_id,
        parent_video=inputs.ingredient,
    )
    # The /v1/videos `spritesheet` variant: a grid of frames read back from the encoded MP4.
    render_spritesheet(video_path, info.frames, sprites_path)
    reporter.report(Phase.ENCODING, 1, 1)
    if should_stop():
        raise GenerationCanceled  # the last moment a cancel can keep the output from being stored
    reporter.report(Phase.UPLOADING, 0, 3)
    # Retried while storage is down; past the limit the stored ones are removed (StorageError).
    store_outputs(
        get_storage(),
        [
            Output(spec.thumbnail_key, thumb_path, "image/jpeg"),
            Output(spec.spritesheet_key, sprites_path, "image/jpeg"),
            Output(spec.video_key, video_path, "video/mp4"),
        ],
        settings,
        on_stored=lambda done, total: reporter.report(Phase.UPLOADING, done, total),
        still_owned=lambda: _owns(reporter.run),
    )
    return info


def _owns(run: runs.Run) -> bool:
    """Whether `run` still holds its job (False when the database cannot tell)."""
    try:
        return with_db_retry(lambda session: runs.heartbeat(session, run), what=f"checking job {run.job_id}")
    except SQLAlchemyError:
        return False
