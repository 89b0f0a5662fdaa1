"""Plan positions of running tests (``test_positions``), for resuming after a crash.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the column type this revision creates (schema.py may move on).
LONG_TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "test_positions",
        sa.Column("test_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("step_no", sa.Integer(), nullable=False),
        sa.Column("start_seq", sa.BigInteger(), nullable=False),
        sa.Column("unix_time_s", sa.Double(), nullable=False),
        sa.Column("state", LONG_TEXT, nullable=False),
        sa.ForeignKeyConstraint(["test_id"], ["tests.id"],
                                name="fk_test_positions_test_id_tests"),
        sa.PrimaryKeyConstraint("test_id", name="pk_test_positions"),
    )


def downgrade() -> None:
    op.drop_table("test_positions")
