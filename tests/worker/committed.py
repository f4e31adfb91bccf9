"""Job rows committed for real: the worker reads them with its own sessions, not the test's."""

from __future__ import annotations

from typing import Any

from app.db import session_scope
from app.jobs.models import Job
from app.jobs.service import new_job_id


def add_job(key_id: str, **values: Any) -> str:
    """Commit a small job for `key_id` (96x64, 8 frames, 3 steps unless `values` say otherwise)."""
    fields: dict[str, Any] = {
        "id": new_job_id(),
        "api_key_id": key_id,
        "model": "builtin:tiny-wan",
        "prompt": "a red ball",
        "duration_s": 1.0,
        "width": 96,
        "height": 64,
        "fps": 8,
        "num_frames": 8,
        "seed": 5,
        "num_inference_steps": 3,
        "guidance_scale": 5.0,
        **values,
    }
    with session_scope() as session:
        session.add(Job(**fields))
        session.commit()
    return str(fields["id"])


def job_row(job_id: str) -> Job:
    """The job's row as the database has it now."""
    with session_scope() as session:
        row = session.get(Job, job_id)
        assert row is not None
        return row
