"""Per-step charge and discharge (Ah, Wh) and temperature range in ``steps``, and the view
``cycles`` that sums them per cycle (docs/schema.md).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cellbench_core.storage.schema import cycles_view

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("charge_ah", "discharge_ah", "charge_wh", "discharge_wh", "temperature_min_c",
           "temperature_max_c")


def upgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Double(), nullable=True))
    op.execute(cycles_view(op.get_bind().dialect.name))


def downgrade() -> None:
    op.execute("DROP VIEW cycles")
    with op.batch_alter_table("steps") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
