"""How long until a job finishes (`eta_seconds`), from step times measured on this deployment.

- A running job: its worker times its own denoising steps and forecasts its finish (remaining steps x
  its mean step time, plus the model's usual tail: decode, encode, upload); the API shows the time left.
- The model's usual speed: after each success the worker folds that run's seconds per denoising step and
  its tail into moving averages per model (`model_timings`), per megapixel-frame (width x height x
  frames / 10^6), so jobs of other sizes can be estimated; the cost is taken as linear in that size.
- A queued job: (time left of the model's running jobs + estimates of the queued jobs ahead of it),
  shared by as many workers as jobs are running (at least one), plus its own estimate.

No estimate (null) until the model has finished a job on this deployment.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Float, Table, bindparam, func, select, update
from sqlalchemy import cast as sa_cast
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import utcnow
from app.jobs.live import ProgressSnapshot
from app.jobs.models import Job, ModelTiming
from app.jobs.states import JobStatus

# Weight of the newest run in the moving averages.
EMA_WEIGHT = 0.3
PIXELS_PER_UNIT = 1_000_000


def work_units(width: int, height: int, num_frames: int) -> float:
    """The size of a job in megapixel-frames."""
    return width * height * num_frames / PIXELS_PER_UNIT


@dataclass(frozen=True, slots=True)
class Timing:
    """A model's usual speed on this deployment."""

    step_s_per_unit: float
    tail_s_per_unit: float

    def run_s(self, units: float, steps: int) -> float:
        """Seconds a job of `units` with `steps` denoising steps takes once a worker has it."""
        return units * (steps * self.step_s_per_unit + self.tail_s_per_unit)


# Averages move slowly (one finished job at a time): each process re-reads them this often, not per poll.
TIMING_CACHE_S = 10.0
_timings: dict[str, tuple[float, Timing | None]] = {}


def forget_timings() -> None:
    """Drop the cached averages (tests, and a process that switched databases)."""
    _timings.clear()


def load_timing(session: Session, model: str, *, max_age_s: float = TIMING_CACHE_S) -> Timing | None:
    """The model's moving averages (as read at most `max_age_s` ago), or None before its first finished
    job."""
    now = time.monotonic()
    cached = _timings.get(model)
    if cached is not None and now - cached[0] < max_age_s:
        return cached[1]
    row = session.get(ModelTiming, model)
    timing = Timing(row.step_s_per_unit, row.tail_s_per_unit) if row is not None else None
    _timings[model] = (now, timing)
    return timing


def record_timing(session: Session, model: str, *, step_s_per_unit: float, tail_s_per_unit: float) -> None:
    """Fold one finished run into the model's moving averages (one atomic UPDATE; the first run inserts)."""
    _timings.pop(model, None)  # this process reads the new averages next time (others within the TTL)
    values = {
        "step_s_per_unit": ModelTiming.step_s_per_unit * (1 - EMA_WEIGHT) + step_s_per_unit * EMA_WEIGHT,
        "tail_s_per_unit": ModelTiming.tail_s_per_unit * (1 - EMA_WEIGHT) + tail_s_per_unit * EMA_WEIGHT,
        "samples": ModelTiming.samples + 1,
        "updated_at": utcnow(),
    }
    result = session.execute(update(ModelTiming).where(ModelTiming.model == model).values(**values))
    if not result.rowcount:  # type: ignore[attr-defined]
        session.add(
            ModelTiming(
                model=model, step_s_per_unit=step_s_per_unit, tail_s_per_unit=tail_s_per_unit, samples=1
            )
        )
    try:
        session.commit()
    except IntegrityError:
        # Another worker inserted the first row at the same moment: fold this run in instead.
        session.rollback()
        session.execute(update(ModelTiming).where(ModelTiming.model == model).values(**values))
        session.commit()


def seconds_until(moment: float | None, now: datetime | None = None) -> int | None:
    """Whole seconds from `now` to the Unix time `moment` (0 once it passed); None for no moment."""
    if moment is None:
        return None
    return max(0, math.ceil(moment - (now or utcnow()).timestamp()))


def eta_seconds(
    session: Session, job: Job, live: ProgressSnapshot | None = None, *, now: datetime | None = None
) -> int | None:
    """Seconds until `job` is expected to finish; None when finished or when nothing is known yet."""
    now = now or utcnow()
    if job.status == JobStatus.IN_PROGRESS:
        if live is not None and live.expected_finish_at is not None:
            return seconds_until(live.expected_finish_at, now)
        expected = job.expected_finish_at
        return seconds_until(expected.timestamp() if expected is not None else None, now)
    if job.status != JobStatus.QUEUED:
        return None
    return queue_estimate(session, job, now=now)[1]


@dataclass(frozen=True, slots=True)
class Ahead:
    """The queued jobs of a model ahead of a job: how many, and their work (sums of megapixel-frames
    per step and of megapixel-frames, in pixels), summed only when the model's speed is known."""

    jobs: int
    step_pixels: float = 0.0
    pixels: float = 0.0


_JOBS = cast(Table, Job.__table__)
_SIZE = sa_cast(_JOBS.c.width, Float) * _JOBS.c.height * _JOBS.c.num_frames
_AHEAD_WHERE = (
    _JOBS.c.status == JobStatus.QUEUED.value,
    _JOBS.c.model == bindparam("model"),
    _JOBS.c.id < bindparam("job_id"),
)
# Built once; the count alone reads the partial index of queued jobs, the sums read the rows too.
_COUNT_AHEAD = select(func.count()).select_from(_JOBS).where(*_AHEAD_WHERE)
_WORK_AHEAD = select(func.count(), func.sum(_SIZE * _JOBS.c.num_inference_steps), func.sum(_SIZE)).where(
    *_AHEAD_WHERE
)

_RUNNING = select(
    _JOBS.c.expected_finish_at,
    _JOBS.c.width,
    _JOBS.c.height,
    _JOBS.c.num_frames,
    _JOBS.c.num_inference_steps,
).where(_JOBS.c.status == JobStatus.IN_PROGRESS.value, _JOBS.c.model == bindparam("model"))


def queued_ahead(session: Session, model: str, job_id: str, *, work: bool) -> Ahead:
    """The queued jobs of `model` with ids before `job_id`; with `work`, their sizes summed too."""
    connection = session.connection()
    params = {"model": model, "job_id": job_id}
    if not work:
        return Ahead(int(connection.execute(_COUNT_AHEAD, params).scalar() or 0))
    jobs, step_pixels, pixels = connection.execute(_WORK_AHEAD, params).one()
    return Ahead(int(jobs or 0), float(step_pixels or 0), float(pixels or 0))


def queue_estimate(session: Session, job: Job, *, now: datetime | None = None) -> tuple[int, int | None]:
    """A queued job's position (queued jobs of its model ahead of it) and ETA (None while its model
    has no timings), in the caller's transaction: a submit counts them before it commits."""
    timing = load_timing(session, job.model)
    ahead = queued_ahead(session, job.model, job.id, work=timing is not None)
    if timing is None:
        return ahead.jobs, None
    now = now or utcnow()
    work_ahead = (ahead.step_pixels * timing.step_s_per_unit + ahead.pixels * timing.tail_s_per_unit) / (
        PIXELS_PER_UNIT
    )
    running = session.connection().execute(_RUNNING, {"model": job.model}).all()
    busy = sum(
        max(0.0, finish.timestamp() - now.timestamp())
        if finish is not None
        else timing.run_s(work_units(width, height, frames), steps)
        for finish, width, height, frames, steps in running
    )
    wait = (busy + work_ahead) / max(1, len(running))
    own = timing.run_s(work_units(job.width, job.height, job.num_frames), job.num_inference_steps)
    return ahead.jobs, math.ceil(wait + own)
