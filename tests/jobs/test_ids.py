"""Job ids: unique, and in creation order even within one millisecond (lists sort by id)."""

from __future__ import annotations

import re
import threading

from app.jobs.service import new_job_id


def test_ids_made_in_a_burst_are_unique_and_in_order() -> None:
    ids = [new_job_id() for _ in range(5000)]  # thousands per millisecond: the same-ms path
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"video_[0-9a-f]{32}", job_id) for job_id in ids)


def test_ids_from_threads_are_unique() -> None:
    made: list[str] = []

    def burst() -> None:
        made.extend(new_job_id() for _ in range(2000))

    threads = [threading.Thread(target=burst) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == 8000
