"""The worker's metrics: job timings, denoising step time, webhook outcomes and GPU memory.

Recorded in the process that ran the task (a prefork pool child) and served by the worker's main
process on KINEMA_WORKER_METRICS_PORT from the PROMETHEUS_MULTIPROC_DIR files every process writes
(`kinema worker` sets that folder up; see docs/operations.md).
"""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics
from sqlalchemy import select

from app.config import get_settings
from app.db import session_scope
from app.jobs.models import Job
from app.jobs.states import TERMINAL, JobStatus
from model.config import Phase

log = logging.getLogger(__name__)

disable_created_metrics()

_LONG_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
JOB_QUEUE_WAIT = Histogram(
    "kinema_job_queue_wait_seconds",
    "From a job's submit to the start of the run that finished it.",
    ["model"],
    buckets=(0.1, 0.25, *_LONG_BUCKETS),
)
JOB_GENERATION = Histogram(
    "kinema_job_generation_seconds",
    "From the start of a job's run to its end (generate, encode, upload), by final status.",
    ["model", "status"],
    buckets=_LONG_BUCKETS,
)
JOBS_FINISHED = Counter(
    "kinema_jobs_finished", "Jobs this worker finished, by final status.", ["model", "status"]
)
DENOISE_STEP = Histogram(
    "kinema_denoise_step_seconds",
    "Wall time of one denoising step of the pipeline, by model.",
    ["model"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32),
)
WEBHOOK_DELIVERIES = Counter(
    "kinema_webhook_deliveries",
    "Webhook delivery attempts by outcome: succeeded, retrying (failed, a retry is scheduled), failed "
    "(given up), or none (nothing was due).",
    ["outcome"],
)
GPU_MEMORY = Gauge(
    "kinema_gpu_memory_bytes",
    "GPU memory of a worker process: allocated and reserved by torch now, peak allocated during the last "
    "job, and the device's free and total memory.",
    ["device", "kind"],
    multiprocess_mode="liveall",
)

_WEBHOOK_OUTCOMES = {"succeeded": "succeeded", "pending": "retrying", "failed": "failed"}


class StepTimer:
    """Times denoising steps from the progress reports of one run (a report follows each step)."""

    def __init__(self, model: str | None = None) -> None:
        self.model = model or get_settings().model_id  # the model this deployment serves
        self._step: int | None = None
        self._at = 0.0

    def tick(self, phase: Phase, step: int) -> None:
        """A progress report: observe the time per step since the previous denoising report."""
        now = time.perf_counter()
        if phase is not Phase.DENOISING:
            self._step = None  # loading, decoding between segments: not step time
            return
        if self._step is not None and step > self._step:
            DENOISE_STEP.labels(self.model).observe((now - self._at) / (step - self._step))
        self._step, self._at = step, now


def record_job(job_id: str) -> None:
    """After a run that claimed `job_id`: its queue wait and run time, from the row's timestamps."""
    with session_scope() as session:
        row = session.execute(
            select(Job.model, Job.status, Job.created_at, Job.started_at, Job.finished_at).where(
                Job.id == job_id
            )
        ).one_or_none()
    if row is None or JobStatus(row.status) not in TERMINAL or row.started_at is None:
        return  # deleted, or handed back unfinished (another run will finish it)
    JOBS_FINISHED.labels(row.model, row.status).inc()
    JOB_QUEUE_WAIT.labels(row.model).observe(max(0.0, (row.started_at - row.created_at).total_seconds()))
    if row.finished_at is not None:
        run_s = (row.finished_at - row.started_at).total_seconds()
        JOB_GENERATION.labels(row.model, row.status).observe(max(0.0, run_s))


def record_webhook(status: object) -> None:
    """After a delivery task: what its attempt came to (`delivery.deliver`'s return value)."""
    WEBHOOK_DELIVERIES.labels(_WEBHOOK_OUTCOMES.get(str(status), "none")).inc()


def sample_gpu_memory() -> None:
    """Set the GPU memory gauges, in a process that has used CUDA; then start a new peak for the next job.

    Never initialises CUDA itself: a prefork parent that did would leave its children unable to use it.
    """
    import torch

    if not torch.cuda.is_initialized():
        return
    for index in range(torch.cuda.device_count()):
        device = str(index)
        free, total = torch.cuda.mem_get_info(index)
        GPU_MEMORY.labels(device, "allocated").set(torch.cuda.memory_allocated(index))
        GPU_MEMORY.labels(device, "reserved").set(torch.cuda.memory_reserved(index))
        GPU_MEMORY.labels(device, "peak").set(torch.cuda.max_memory_allocated(index))
        GPU_MEMORY.labels(device, "free").set(free)
        GPU_MEMORY.labels(device, "total").set(total)
        torch.cuda.reset_peak_memory_stats(index)
