"""Each key's count of active (queued or running) jobs, kept by triggers; an index of queued jobs

The concurrency limit was checked by counting the key's active jobs at every submit, a cost that grew
with the key's backlog. Triggers on `jobs` now keep `api_keys.active_jobs` right in the same
transaction as every insert, delete or status change, whoever makes it (API, worker, sweeper, SQL by
hand), so the check reads one row. A partial index holds only queued jobs, by model and id: the
queue position counts index entries alone.

Revision ID: 0008_key_active_jobs
Revises: 0007_watermark_hash
Create Date: 2026-11-25 23:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_key_active_jobs"
down_revision = "0007_watermark_hash"
branch_labels = None
depends_on = None

ACTIVE = "('queued', 'in_progress')"

POSTGRES_FUNCTION = f"""
CREATE FUNCTION kinema_count_active_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status IN {ACTIVE} THEN
        UPDATE api_keys SET active_jobs = active_jobs - 1 WHERE id = OLD.api_key_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.status IN {ACTIVE} THEN
        UPDATE api_keys SET active_jobs = active_jobs + 1 WHERE id = NEW.api_key_id;
    END IF;
    RETURN NULL;
END
$$
"""
# Only rows whose activeness (or key) changes fire: progress writes and queued -> in_progress do not.
POSTGRES_TRIGGERS = [
    f"""CREATE TRIGGER jobs_active_insert AFTER INSERT ON jobs FOR EACH ROW
        WHEN (NEW.status IN {ACTIVE}) EXECUTE FUNCTION kinema_count_active_jobs()""",
    f"""CREATE TRIGGER jobs_active_delete AFTER DELETE ON jobs FOR EACH ROW
        WHEN (OLD.status IN {ACTIVE}) EXECUTE FUNCTION kinema_count_active_jobs()""",
    f"""CREATE TRIGGER jobs_active_update AFTER UPDATE OF status, api_key_id ON jobs FOR EACH ROW
        WHEN ((OLD.status IN {ACTIVE}) IS DISTINCT FROM (NEW.status IN {ACTIVE})
              OR OLD.api_key_id IS DISTINCT FROM NEW.api_key_id)
        EXECUTE FUNCTION kinema_count_active_jobs()""",
]
SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER jobs_active_insert AFTER INSERT ON jobs WHEN NEW.status IN {ACTIVE}
        BEGIN UPDATE api_keys SET active_jobs = active_jobs + 1 WHERE id = NEW.api_key_id; END""",
    f"""CREATE TRIGGER jobs_active_delete AFTER DELETE ON jobs WHEN OLD.status IN {ACTIVE}
        BEGIN UPDATE api_keys SET active_jobs = active_jobs - 1 WHERE id = OLD.api_key_id; END""",
    # A comparison is 0 or 1 in SQLite: the two updates move the count by exactly the change.
    f"""CREATE TRIGGER jobs_active_update AFTER UPDATE OF status, api_key_id ON jobs
        WHEN (OLD.status IN {ACTIVE}) != (NEW.status IN {ACTIVE}) OR OLD.api_key_id != NEW.api_key_id
        BEGIN
            UPDATE api_keys SET active_jobs = active_jobs - (OLD.status IN {ACTIVE})
                WHERE id = OLD.api_key_id;
            UPDATE api_keys SET active_jobs = active_jobs + (NEW.status IN {ACTIVE})
                WHERE id = NEW.api_key_id;
        END""",
]
TRIGGERS = ("jobs_active_insert", "jobs_active_delete", "jobs_active_update")


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("active_jobs", sa.Integer(), server_default="0", nullable=False))
    op.execute(
        f"""UPDATE api_keys SET active_jobs = (
            SELECT count(*) FROM jobs WHERE jobs.api_key_id = api_keys.id AND jobs.status IN {ACTIVE})"""
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        for statement in POSTGRES_TRIGGERS:
            op.execute(statement)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)
    op.create_index(
        "ix_jobs_queued_model_id",
        "jobs",
        ["model", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'queued'"),
        sqlite_where=sa.text("status = 'queued'"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_queued_model_id", table_name="jobs")
    postgres = op.get_bind().dialect.name == "postgresql"
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON jobs" if postgres else ""))
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS kinema_count_active_jobs()")
    # A plain DROP COLUMN (SQLite 3.35+ has one): batch mode would rebuild `api_keys`, which the job
    # rows' foreign keys refuse while there are jobs.
    op.execute("ALTER TABLE api_keys DROP COLUMN active_jobs")
