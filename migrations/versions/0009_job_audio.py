"""Soundtracks: whether a job asks for audio and from what prompt, and the MP4's audio stream

`audio` and `audio_prompt` are what the request asked for; `output_audio_codec`, `output_audio_sample_rate`
and `output_audio_channels` describe the audio stream of the finished MP4 (null: it has none). Existing
jobs asked for no audio.

Revision ID: 0009_job_audio
Revises: 0008_key_active_jobs
Create Date: 2026-11-28 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_job_audio"
down_revision = "0008_key_active_jobs"
branch_labels = None
depends_on = None

COLUMNS = ("audio", "audio_prompt", "output_audio_codec", "output_audio_sample_rate", "output_audio_channels")


def upgrade() -> None:
    # Plain ADD COLUMNs (batch mode would rebuild `jobs` on SQLite, dropping the triggers of 0008).
    op.add_column("jobs", sa.Column("audio", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("jobs", sa.Column("audio_prompt", sa.Text(), nullable=True))
    op.add_column("jobs", sa.Column("output_audio_codec", sa.String(length=16), nullable=True))
    op.add_column("jobs", sa.Column("output_audio_sample_rate", sa.Integer(), nullable=True))
    op.add_column("jobs", sa.Column("output_audio_channels", sa.Integer(), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMNs (SQLite 3.35+ has them), for the same reason.
    for name in reversed(COLUMNS):
        op.drop_column("jobs", name)
