"""A run's clock: times its own steps to forecast its finish, and measures what the ETA model learns."""

from __future__ import annotations

import time

from app.jobs.eta import Timing
from model.config import Phase


class RunClock:
    """Forecasts the run's finish (Unix time) at every progress report; see `app/jobs/eta.py`.

    Denoising starts when loading reports its end; the mean step time so far times the steps left is
    the denoising still to come. The tail (decode, encode, upload) comes from the model's averages.
    """

    def __init__(self, *, units: float, steps: int, timing: Timing | None) -> None:
        self.units = units
        self.steps = steps
        self.timing = timing
        self._loaded_at: float | None = None
        self._denoised_at: float | None = None

    def _tail_s(self) -> float:
        return self.timing.tail_s_per_unit * self.units if self.timing is not None else 0.0

    def expected_finish(self, phase: Phase, step: int, total: int) -> float | None:
        """When the run should finish, seen from `step` of `total` in `phase`; None: no basis yet."""
        now = time.time()
        if phase in (Phase.LOADING, Phase.AUDIO):
            # Denoising is timed from the end of what comes before it (loading, then the soundtrack).
            if total and step >= total:
                self._loaded_at = now
            return now + self.timing.run_s(self.units, self.steps) if self.timing is not None else None
        if phase is Phase.DENOISING:
            if self._loaded_at is None:
                self._loaded_at = now
            self._denoised_at = now
            if step < 1:
                return None
            per_step = (now - self._loaded_at) / step
            return now + per_step * max(0, total - step) + self._tail_s()
        started = self._denoised_at if self._denoised_at is not None else now
        elapsed = now - started
        remaining = max(0.0, self._tail_s() - elapsed)
        if phase is Phase.DECODING and 1 <= step < total:
            # Frames stream into the encoder while decoding: the chunk rate covers both.
            remaining = max(remaining, elapsed / step * (total - step))
        return now + remaining

    def observed(self) -> Timing | None:
        """This run's seconds per denoising step and tail, per megapixel-frame (call once it succeeded)."""
        if self._loaded_at is None or self._denoised_at is None or self.units <= 0 or self.steps <= 0:
            return None
        denoise_s = self._denoised_at - self._loaded_at
        tail_s = time.time() - self._denoised_at
        return Timing(denoise_s / self.steps / self.units, tail_s / self.units)
