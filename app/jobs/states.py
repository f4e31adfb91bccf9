"""The job state machine: every allowed transition, in one table."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.IN_PROGRESS, JobStatus.FAILED, JobStatus.CANCELED}),
    # in_progress -> in_progress: a redelivered task takes over a job whose worker died (its lease ran out);
    # in_progress -> queued: the sweeper re-queues such a job itself (app/jobs/recovery.py).
    JobStatus.IN_PROGRESS: frozenset(
        {JobStatus.QUEUED, JobStatus.IN_PROGRESS, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED}
    ),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELED: frozenset(),
}

TERMINAL: frozenset[JobStatus] = frozenset(s for s, targets in TRANSITIONS.items() if not targets)


def can_transition(source: JobStatus, target: JobStatus) -> bool:
    """Whether the table allows `source -> target`."""
    return target in TRANSITIONS[source]


def sources_of(target: JobStatus) -> frozenset[JobStatus]:
    """Every status from which `target` may be entered: the WHERE clause of a compare-and-set."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)
