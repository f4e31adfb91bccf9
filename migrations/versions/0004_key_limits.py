"""Key scopes and limits; an index for per-key job counts

Revision ID: 0004_key_limits
Revises: 0003_jobs_control
Create Date: 2026-11-26 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_key_limits"
down_revision = "0003_jobs_control"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        # Keys that exist already keep doing what they did: generate and read.
        batch_op.add_column(
            sa.Column("scopes", sa.String(length=100), server_default="generate read", nullable=False)
        )
        batch_op.add_column(sa.Column("rate_limit_rpm", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("max_concurrent_jobs", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("monthly_quota_s", sa.Integer(), nullable=True))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_jobs_api_key_id_status_created_at", ["api_key_id", "status", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_api_key_id_status_created_at")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("monthly_quota_s")
        batch_op.drop_column("max_concurrent_jobs")
        batch_op.drop_column("rate_limit_rpm")
        batch_op.drop_column("scopes")
