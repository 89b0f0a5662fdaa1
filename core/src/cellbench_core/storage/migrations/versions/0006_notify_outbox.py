"""The notifiers' outbox (``notify_outbox``): what a notifier has still to deliver, in order.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types this revision creates (schema.py may move on).
LONG_TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "notify_outbox",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("notifier", sa.String(64), nullable=False),
        sa.Column("destination", sa.String(255), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("created_unix_s", sa.Double(), nullable=False),
        sa.Column("payload", LONG_TEXT, nullable=False),
        sa.Column("status", sa.String(16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_unix_s", sa.Double(), nullable=False),
        sa.Column("finished_unix_s", sa.Double(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'rejected')",
                           name="ck_notify_outbox_status"),
        sa.PrimaryKeyConstraint("id", name="pk_notify_outbox"),
        sa.UniqueConstraint("notifier", "destination", "event_id",
                            name="uq_notify_outbox_notifier_destination_event_id"),
    )
    op.create_index("ix_notify_outbox_notifier_status_id", "notify_outbox",
                    ["notifier", "status", "id"])


def downgrade() -> None:
    op.drop_index("ix_notify_outbox_notifier_status_id", table_name="notify_outbox")
    op.drop_table("notify_outbox")
