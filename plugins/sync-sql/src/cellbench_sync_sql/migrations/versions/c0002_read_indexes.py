"""Indexes for the central database's readers, built online, and the ``live_samples`` view.

- one test's samples by time range: ``samples (origin, test_id, unix_time_s)``;
- a battery's tests: ``batteries (name)`` and ``tests (origin, battery_id)``;
- the latest state per station: ``tests (status)`` and the ``live_samples`` view, which finds
  each running test's newest sample through ``sync_tests`` (one primary-key lookup per test).

Revision ID: c0002
Revises: c0001
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

from cellbench_sync_sql.migrations import (
    create_index_online,
    create_view_if_missing,
    drop_index_online,
)

revision: str = "c0002"
down_revision: str | None = "c0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_samples_origin_test_id_unix_time_s": ("samples", ["origin", "test_id", "unix_time_s"]),
    "ix_batteries_name": ("batteries", ["name"]),
    "ix_tests_origin_battery_id": ("tests", ["origin", "battery_id"]),
    "ix_tests_status": ("tests", ["status"]),
}

LIVE_SAMPLES = """
CREATE VIEW live_samples AS
SELECT t.origin, t.id AS test_id, c.name AS channel, t.name AS test_name, t.station,
       s.seq, s.unix_time_s, s.test_time_s, s.step_time_s, s.voltage_v, s.current_a,
       s.power_w, s.temperature_c, s.step_index, s.plan_line, s.cycle, s.ah, s.wh
FROM tests t
JOIN channels c ON c.origin = t.origin AND c.id = t.channel_id
JOIN sync_tests p ON p.origin = t.origin AND p.test_id = t.id
JOIN samples s ON s.origin = t.origin AND s.test_id = t.id AND s.seq = p.seq
WHERE t.status = 'running'
"""


def upgrade() -> None:
    for name, (table, columns) in INDEXES.items():
        create_index_online(name, table, columns)
    create_view_if_missing("live_samples", LIVE_SAMPLES)


def downgrade() -> None:
    op.execute("DROP VIEW live_samples")
    for name, (table, _) in INDEXES.items():
        drop_index_online(name, table)
