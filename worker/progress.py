"""Progress of a run: a live snapshot to Redis on every step, the job row a few times a second,
and a heartbeat thread that keeps the run's lease while a long step or upload runs."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from types import TracebackType

from app.jobs import runs
from app.jobs.live import ProgressChannel, ProgressSnapshot
from app.jobs.states import JobStatus
from model.config import Phase, StepInfo
from worker.metrics import StepTimer
from worker.retry import with_db_retry
from worker.timing import RunClock

log = logging.getLogger(__name__)

# The share of the progress bar each phase covers.
PHASE_SPAN: dict[Phase, tuple[int, int]] = {
    Phase.LOADING: (0, 5),
    Phase.DENOISING: (5, 85),
    Phase.DECODING: (85, 94),
    Phase.ENCODING: (94, 97),
    Phase.UPLOADING: (97, 99),
}
# A job with a soundtrack makes it first, in a tenth of the bar taken from denoising's share.
AUDIO_PHASE_SPAN: dict[Phase, tuple[int, int]] = {
    **PHASE_SPAN,
    Phase.AUDIO: (5, 15),
    Phase.DENOISING: (15, 85),
}


class RunLost(Exception):
    """The job's row no longer names this run (its lease ran out and another worker took it)."""


def percent(phase: Phase, step: int, total: int, *, audio: bool = False) -> int:
    """Overall progress 0-99 for `step` of `total` in `phase` (100 is only ever `succeeded`); `audio`:
    the job makes a soundtrack too."""
    start, end = (AUDIO_PHASE_SPAN if audio else PHASE_SPAN)[phase]
    fraction = min(1.0, step / total) if total > 0 else 0.0
    return int(start + (end - start) * fraction)


class ProgressReporter:
    """Turns model callbacks into progress writes, throttled for the database."""

    def __init__(
        self,
        run: runs.Run,
        channel: ProgressChannel | None,
        *,
        write_interval_s: float,
        clock: RunClock | None = None,
        audio: bool = False,
    ) -> None:
        self.run = run
        self.audio = audio
        self.channel = channel
        self.write_interval_s = write_interval_s
        self.clock = clock
        self.step_timer = StepTimer()  # the denoising step-time metric
        self._last_write = 0.0
        self._last_phase: Phase | None = None
        self._last_values: dict[str, object] = {}

    def report(self, phase: Phase, step: int, total: int) -> None:
        """Publish now; write the row when the phase changed or the interval passed."""
        self.step_timer.tick(phase, step)
        progress = percent(phase, step, total, audio=self.audio)
        finish = self.clock.expected_finish(phase, step, total) if self.clock is not None else None
        if self.channel is not None:
            snapshot = ProgressSnapshot(JobStatus.IN_PROGRESS, phase, progress, step, total, finish)
            self.channel.publish(self.run.job_id, snapshot)
        now = time.monotonic()
        self._last_values = {
            "phase": str(phase),
            "progress": progress,
            "step": step,
            "total_steps": total,
            "expected_finish_at": datetime.fromtimestamp(finish, UTC) if finish is not None else None,
        }
        if phase != self._last_phase or now - self._last_write >= self.write_interval_s or step == total:
            self._last_phase, self._last_write = phase, now
            if not self._write(dict(self._last_values)):
                raise RunLost(self.run.job_id)

    def flush(self) -> None:
        """Write the last report to the row now, so a run that stops shows where it got to."""
        if self._last_values:
            self._write(dict(self._last_values))

    def _write(self, values: dict[str, object]) -> bool:
        """Write `values` and refresh the lease (retried across a dropped connection); False: job lost."""
        return with_db_retry(
            lambda session: runs.heartbeat(session, self.run, **values), what=f"progress of {self.run.job_id}"
        )

    def on_step(self, info: StepInfo) -> None:
        """The `on_step` callback given to `model.generate`."""
        self.report(info.phase, info.step, info.total_steps)


class Heartbeat:
    """Refreshes the run's lease every `interval_s` in a thread; `lost` is set if the run lost the job."""

    def __init__(self, run: runs.Run, *, interval_s: float) -> None:
        self.run = run
        self.interval_s = interval_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run.job_id}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                owned = with_db_retry(
                    lambda session: runs.heartbeat(session, self.run), what=f"heartbeat of {self.run.job_id}"
                )
                if not owned:
                    self.lost.set()
                    return
            except Exception as exc:  # the database is still down after the retries: try again next beat
                log.warning("heartbeat for %s failed: %s", self.run.job_id, exc)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
