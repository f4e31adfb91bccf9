"""Storing a run's outputs while storage may be down: each upload is retried with backoff, and past the
limit the job's objects are removed again, so a failed job leaves none behind.

No key ever holds part of a file: an S3 object exists only once its PUT (or multipart upload) completed,
and the local backend renames a finished copy into place. What a failure can leave is a set of complete
objects without the rest (the thumbnail without the video), and those are what `store_outputs` removes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from app.config import Settings
from app.storage import Storage, StorageError
from worker.retry import Backoff, call_with_retry

log = logging.getLogger(__name__)

# The longest wait between two tries of one upload.
MAX_WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class Output:
    """One file of a run's output and where it goes."""

    key: str
    path: Path
    content_type: str


def storage_backoff(settings: Settings) -> Backoff:
    """KINEMA_STORAGE_RETRY_ATTEMPTS tries within KINEMA_STORAGE_RETRY_DEADLINE_S, exponential waits."""
    return Backoff(
        attempts=settings.storage_retry_attempts,
        deadline_s=settings.storage_retry_deadline_s,
        first_wait_s=settings.storage_retry_backoff_s,
        max_wait_s=MAX_WAIT_S,
    )


def _is_storage_error(exc: Exception) -> bool:
    return isinstance(exc, StorageError)


def store_outputs(
    storage: Storage,
    outputs: Sequence[Output],
    settings: Settings,
    *,
    on_stored: Callable[[int, int], None] | None = None,
    still_owned: Callable[[], bool] = lambda: True,
) -> None:
    """Upload `outputs` in order (the video last: once it is stored, everything is), each with retries.

    `on_stored(done, total)` follows each upload. If one still fails after its retries, every output's
    key is deleted (with the same retries) before the StorageError propagates, unless `still_owned()`
    says another run took the job over meanwhile: its objects live under the same keys.
    """
    backoff = storage_backoff(settings)
    try:
        for done, output in enumerate(outputs, 1):
            call_with_retry(
                partial(storage.put_file, output.key, output.path, output.content_type),
                retry_if=_is_storage_error,
                backoff=backoff,
                what=f"upload of {output.key}",
            )
            if on_stored is not None:
                on_stored(done, len(outputs))
    except StorageError:
        if still_owned():
            remove_outputs(storage, [output.key for output in outputs], backoff)
        raise


def remove_outputs(storage: Storage, keys: Sequence[str], backoff: Backoff) -> bool:
    """Delete `keys` (missing ones too: a PUT that timed out may still have landed), retrying while storage
    is down within one `backoff` budget for all of them; False (logged) if some could not be deleted."""
    left = list(keys)

    def delete_left() -> None:
        while left:
            storage.delete(left[0])
            left.pop(0)

    try:
        call_with_retry(delete_left, retry_if=_is_storage_error, backoff=backoff, what="removing outputs")
    except StorageError as exc:
        log.warning("outputs %s of a failed upload not removed (no job refers to them): %s", left, exc)
        return False
    return True
