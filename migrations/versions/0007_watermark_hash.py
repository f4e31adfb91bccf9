"""Each job's watermark hash, indexed: verify finds the job an invisible watermark names in one lookup

The invisible watermark carries a 32-bit hash of the job id (the first 4 bytes of SHA-256 of the id).
Verify used to hash every key id, then every job id of the matching keys; `jobs.watermark_job_hash`
holds that hash (an unsigned 32-bit number, so BigInteger) with an index. Existing rows are filled here.

Revision ID: 0007_watermark_hash
Revises: 0006_job_inputs
Create Date: 2026-11-25 23:00:00.000000
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0007_watermark_hash"
down_revision = "0006_job_inputs"
branch_labels = None
depends_on = None

_BATCH = 1000


def _job_hash(job_id: str) -> int:
    # The payload's job field (model.invisible_watermark.short_hash(job_id, 32)), spelt out here so the
    # revision keeps meaning what it meant when it ran.
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:4], "big")


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("watermark_job_hash", sa.BigInteger(), nullable=True))
    connection = op.get_bind()
    ids = list(connection.execute(sa.text("SELECT id FROM jobs")).scalars())
    update = sa.text("UPDATE jobs SET watermark_job_hash = :hash WHERE id = :id")
    for start in range(0, len(ids), _BATCH):
        connection.execute(
            update, [{"id": job_id, "hash": _job_hash(job_id)} for job_id in ids[start : start + _BATCH]]
        )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_watermark_job_hash", ["watermark_job_hash"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_watermark_job_hash")
        batch_op.drop_column("watermark_job_hash")
