"""Who holds the station lease (``station_leases``): one station per database.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "station_leases",
        sa.Column("station", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("since_unix_s", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("station", name="pk_station_leases"),
    )


def downgrade() -> None:
    op.drop_table("station_leases")
