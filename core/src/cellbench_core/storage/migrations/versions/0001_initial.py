"""The initial schema: batteries, channels, tests, samples, sample_aux, steps, events.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types this revision creates (schema.py may move on).
LONG_TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "batteries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("chemistry", sa.String(64), nullable=False),
        sa.Column("nominal_capacity_ah", sa.Double(), nullable=False),
        sa.Column("nominal_voltage_v", sa.Double(), nullable=True),
        sa.Column("voltage_max_v", sa.Double(), nullable=True),
        sa.Column("voltage_min_v", sa.Double(), nullable=True),
        sa.Column("current_max_charge_a", sa.Double(), nullable=True),
        sa.Column("current_max_discharge_a", sa.Double(), nullable=True),
        sa.Column("temperature_max_c", sa.Double(), nullable=True),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("created_unix_s", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_batteries"),
        sa.UniqueConstraint("name", name="uq_batteries_name"),
    )
    op.create_table(
        "channels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("driver", sa.String(255), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_channels"),
        sa.UniqueConstraint("name", name="uq_channels_name"),
    )
    op.create_table(
        "tests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("battery_id", sa.Integer(), nullable=True),
        sa.Column("plan_name", sa.String(255), nullable=False),
        sa.Column("plan_source", sa.Text(), nullable=False),
        sa.Column("plan_text", LONG_TEXT, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.Column("start_unix_s", sa.Double(), nullable=False),
        sa.Column("end_unix_s", sa.Double(), nullable=True),
        sa.Column("sample_period_s", sa.Double(), nullable=False),
        sa.Column("station", sa.String(255), nullable=False),
        sa.CheckConstraint(
            "status IN ('running', 'finished', 'stopped', 'failed', 'interrupted')",
            name="ck_tests_status",
        ),
        sa.ForeignKeyConstraint(
            ["battery_id"], ["batteries.id"], name="fk_tests_battery_id_batteries"
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channels.id"], name="fk_tests_channel_id_channels"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_tests"),
    )
    op.create_table(
        "samples",
        sa.Column("test_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("test_time_s", sa.Double(), nullable=False),
        sa.Column("unix_time_s", sa.Double(), nullable=False),
        sa.Column("step_time_s", sa.Double(), nullable=False),
        sa.Column("voltage_v", sa.Double(), nullable=True),
        sa.Column("current_a", sa.Double(), nullable=True),
        sa.Column("power_w", sa.Double(), nullable=True),
        sa.Column("temperature_c", sa.Double(), nullable=True),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("plan_line", sa.Integer(), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("ah", sa.Double(), nullable=True),
        sa.Column("wh", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("test_id", "seq", name="pk_samples"),
    )
    op.create_table(
        "sample_aux",
        sa.Column("test_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("test_id", "seq", "name", name="pk_sample_aux"),
    )
    op.create_table(
        "steps",
        sa.Column("test_id", sa.Integer(), nullable=False),
        sa.Column("step_no", sa.Integer(), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("plan_line", sa.Integer(), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("start_seq", sa.BigInteger(), nullable=False),
        sa.Column("end_seq", sa.BigInteger(), nullable=False),
        sa.Column("start_test_time_s", sa.Double(), nullable=False),
        sa.Column("end_test_time_s", sa.Double(), nullable=False),
        sa.Column("ah", sa.Double(), nullable=True),
        sa.Column("wh", sa.Double(), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["test_id"], ["tests.id"], name="fk_steps_test_id_tests"),
        sa.PrimaryKeyConstraint("test_id", "step_no", name="pk_steps"),
    )
    op.create_table(
        "events",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("test_id", sa.Integer(), nullable=True),
        sa.Column("unix_time_s", sa.Double(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(255), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["test_id"], ["tests.id"], name="fk_events_test_id_tests"),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_test_id", "events", ["test_id"])


def downgrade() -> None:
    for table in ("events", "steps", "sample_aux", "samples", "tests", "channels", "batteries"):
        op.drop_table(table)
