"""The central schema as cellbench created it before central migrations existed: the station
tables keyed by ``origin``, ``sync_stations``, ``sync_tests`` and the ``cycles`` view.

A central database created then (it has ``sync_stations`` but no version table) is stamped
with this revision and upgraded from here.

Revision ID: c0001
Revises:
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from cellbench_sdk.storage import schema
from cellbench_sync_sql.migrations import (
    create_index_online,
    create_table_if_missing,
    create_view_if_missing,
)

revision: str = "c0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_table_if_missing('batteries',
    sa.Column('origin', sa.String(length=255), nullable=False),
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('name', sa.String(length=255), autoincrement=False, nullable=False),
    sa.Column('chemistry', sa.String(length=64), autoincrement=False, nullable=False),
    sa.Column('nominal_capacity_ah', sa.Double(), autoincrement=False, nullable=False),
    sa.Column('nominal_voltage_v', sa.Double(), autoincrement=False, nullable=True),
    sa.Column('voltage_max_v', sa.Double(), autoincrement=False, nullable=True),
    sa.Column('voltage_min_v', sa.Double(), autoincrement=False, nullable=True),
    sa.Column('current_max_charge_a', sa.Double(), autoincrement=False, nullable=True),
    sa.Column('current_max_discharge_a', sa.Double(), autoincrement=False, nullable=True),
    sa.Column('temperature_max_c', sa.Double(), autoincrement=False, nullable=True),
    sa.Column('metadata', sa.Text(), autoincrement=False, nullable=False),
    sa.Column('created_unix_s', sa.Double(), autoincrement=False, nullable=False),
    sa.PrimaryKeyConstraint('origin', 'id', name='pk_batteries')
    )
    create_table_if_missing('channels',
    sa.Column('origin', sa.String(length=255), nullable=False),
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('name', sa.String(length=255), autoincrement=False, nullable=False),
    sa.Column('driver', sa.String(length=255), autoincrement=False, nullable=False),
    sa.Column('settings', sa.Text(), autoincrement=False, nullable=False),
    sa.PrimaryKeyConstraint('origin', 'id', name='pk_channels')
    )
    create_table_if_missing('events',
    sa.Column('origin', sa.String(length=255), nullable=False),
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False,
              nullable=False),
    sa.Column('test_id', sa.Integer(), autoincrement=False, nullable=True),
    sa.Column('unix_time_s', sa.Double(), autoincrement=False, nullable=False),
    sa.Column('kind', sa.String(length=64), autoincrement=False, nullable=False),
    sa.Column('channel', sa.String(length=255), autoincrement=False, nullable=True),
    sa.Column('message', sa.Text(), autoincrement=False, nullable=False),
    sa.Column('data', sa.Text(), autoincrement=False, nullable=False),
    sa.PrimaryKeyConstraint('origin', 'id', name='pk_events')
    )
    create_index_online('ix_events_origin_test_id', 'events', ['origin', 'test_id'])
    create_table_if_missing('sample_aux',
    sa.Column('origin', sa.String(length=255), nullable=False),
    sa.Column('test_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('name', sa.String(length=64), autoincrement=False, nullable=False),
    sa.Column('value', sa.Double(), autoincrement=False, nullable=False),
    sa.PrimaryKeyConstraint('origin', 'test_id', 'seq', 'name', name='pk_sample_aux')
    )
    create_table_if_missing('samples',
    sa.Column('origin', sa.String(length=255), nullable=False),
    sa.Column('test_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('test_time_s', sa.Double(), autoincrement=False, nullable=False),
    sa.Column('unix_time_s', sa.Double(), autoincrement=False, nullable=False),
    sa.Column('step_time_s', sa.Double(), autoincrement=False, nullable=False),
    sa.Column('voltage_v', sa.Double(), autoincrement=False, nullable=True),
    sa.Column('current_a', sa.Double(), autoincrement=False, nullable=True),
    sa.Column('power_w', sa.Double(), autoincrement=False, nullable=True),
    sa.Column('temperature_c', sa.Double(), autoincrement=False, nullable=True),
    sa.Column('step_index', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('plan_line', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('cycle', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('ah', sa.Double(), autoincrement=False, nullable=True),
    sa.Column('wh', sa.Double(), autoincrement=False, nullable=True),
    sa.PrimaryKeyConstraint('origin', 'test_id', 'seq', name='pk_samples')
    )
    create_table_if_missing('steps',
    sa.Column('origin', sa.String(length=255), nullable=False),
    sa.Column('test_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('step_no', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('step_index', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('plan_line', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('cycle', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('mode', sa.String(length=16), autoincrement=False, nullable=False),
    sa.Column('text', sa.Text(), autoincrement=False, nullable=False),
    sa.Column('start_seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('end_seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('start_test_time_s', sa.Double(), autoincrement=False, nullable=False),
    sa.Column('end_test_time_s', sa.Double(), autoincrement=False, nullable=False),
    sa.Column('ah', sa.Double(), autoincrement=False, nullable=True),
    sa.Column('wh', sa.Double(), autoincrement=False, nullable=True),
    sa.Column('end_reason', sa.Text(), autoincrement=False, nullable=False),
    sa.Column('charge_ah', sa.Double(), autoincrement=False, nullable=True),
    sa.Column('discharge_ah', sa.Double(), autoincrement=False, nullable=True),
    sa.Column('charge_wh', sa.Double(), autoincrement=False, nullable=True),
    sa.Column('discharge_wh', sa.Double(), autoincrement=False, nullable=True),
    sa.Column('temperature_min_c', sa.Double(), autoincrement=False, nullable=True),
    sa.Column('temperature_max_c', sa.Double(), autoincrement=False, nullable=True),
    sa.PrimaryKeyConstraint('origin', 'test_id', 'step_no', name='pk_steps')
    )
    create_table_if_missing('sync_stations',
    sa.Column('origin', sa.String(length=255), nullable=False),
    sa.Column('event_id', sa.BigInteger(), nullable=False),
    sa.Column('synced_unix_s', sa.Double(), nullable=False),
    sa.PrimaryKeyConstraint('origin', name='pk_sync_stations')
    )
    create_table_if_missing('sync_tests',
    sa.Column('origin', sa.String(length=255), nullable=False),
    sa.Column('test_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('step_no', sa.BigInteger(), nullable=False),
    sa.Column('final', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('origin', 'test_id', name='pk_sync_tests')
    )
    create_table_if_missing('tests',
    sa.Column('origin', sa.String(length=255), nullable=False),
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('name', sa.String(length=255), autoincrement=False, nullable=False),
    sa.Column('channel_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('battery_id', sa.Integer(), autoincrement=False, nullable=True),
    sa.Column('plan_name', sa.String(length=255), autoincrement=False, nullable=False),
    sa.Column('plan_source', sa.Text(), autoincrement=False, nullable=False),
    sa.Column('plan_text', sa.Text().with_variant(mysql.MEDIUMTEXT(), 'mariadb')
              .with_variant(mysql.MEDIUMTEXT(), 'mysql'), autoincrement=False, nullable=False),
    sa.Column('status', sa.String(length=16), autoincrement=False, nullable=False),
    sa.Column('end_reason', sa.Text(), autoincrement=False, nullable=True),
    sa.Column('start_unix_s', sa.Double(), autoincrement=False, nullable=False),
    sa.Column('end_unix_s', sa.Double(), autoincrement=False, nullable=True),
    sa.Column('sample_period_s', sa.Double(), autoincrement=False, nullable=False),
    sa.Column('station', sa.String(length=255), autoincrement=False, nullable=False),
    sa.PrimaryKeyConstraint('origin', 'id', name='pk_tests')
    )
    create_view_if_missing("cycles", schema.cycles_view(op.get_bind().dialect.name,
                                                     ("origin", "test_id")))


def downgrade() -> None:
    op.execute("DROP VIEW cycles")
    for table in ("tests", "sync_tests", "sync_stations", "steps", "samples", "sample_aux",
                  "events", "channels", "batteries"):
        op.drop_table(table)
