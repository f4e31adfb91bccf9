"""Job inputs: the uploaded or fetched input of image-to-video and edit jobs, and the edit strength

Revision ID: 0006_job_inputs
Revises: 0005_moderation
Create Date: 2026-11-27 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_job_inputs"
down_revision = "0005_moderation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("input_key", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("input_type", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("strength", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("strength")
        batch_op.drop_column("input_type")
        batch_op.drop_column("input_key")
