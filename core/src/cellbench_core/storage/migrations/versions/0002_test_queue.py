"""The test queue (``test_queue``) and the read-only view ``live_samples``.

On PostgreSQL an insert into ``test_queue`` also sends a notification on the channel
``cellbench_queue`` (payload: the new row's id), so that a station picks it up at once.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from cellbench_core.storage.schema import LIVE_SAMPLES_VIEW

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the column type this revision creates (schema.py may move on).
LONG_TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")

PG_NOTIFY_FUNCTION = """
CREATE FUNCTION cellbench_queue_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cellbench_queue', NEW.id::text);
    RETURN NEW;
END
$$
"""

PG_NOTIFY_TRIGGER = """
CREATE TRIGGER test_queue_notify AFTER INSERT ON test_queue
FOR EACH ROW EXECUTE FUNCTION cellbench_queue_notify()
"""


def upgrade() -> None:
    op.create_table(
        "test_queue",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.Integer(), nullable=False),
        sa.Column("plan", LONG_TEXT, nullable=False),
        sa.Column("plan_source", sa.String(255), nullable=True),
        sa.Column("battery", sa.String(255), nullable=True),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("status", sa.String(16), nullable=False, server_default="queued"),
        sa.Column("created_unix_s", sa.Double(), nullable=False),
        sa.Column("started_unix_s", sa.Double(), nullable=True),
        sa.Column("finished_unix_s", sa.Double(), nullable=True),
        sa.Column("test_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'finished', 'stopped', 'failed', 'cancelled', "
            "'interrupted')",
            name="ck_test_queue_status",
        ),
        sa.ForeignKeyConstraint(["test_id"], ["tests.id"], name="fk_test_queue_test_id_tests"),
        sa.PrimaryKeyConstraint("id", name="pk_test_queue"),
    )
    op.create_index("ix_test_queue_status", "test_queue", ["status"])
    op.execute(LIVE_SAMPLES_VIEW)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_NOTIFY_FUNCTION)
        op.execute(PG_NOTIFY_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER test_queue_notify ON test_queue")
        op.execute("DROP FUNCTION cellbench_queue_notify()")
    op.execute("DROP VIEW live_samples")
    op.drop_table("test_queue")
