"""No foreign keys from ``events``, ``steps`` and ``test_positions`` to ``tests``.

Those rows are written by the station, in waves across all its running tests, only for tests
it recorded itself, and tests are never deleted under them (``cellbench test delete`` removes
a test's rows first). PostgreSQL checks a foreign key by a trigger per row, which doubled the
cost of a station-wide wave (a start of 100,000 tests: 2.4 s of the events' COPY instead of
0.4 s). The central schema has none either. Their indexes and primary keys stay.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from alembic import op

from cellbench_core.storage.schema import cycles_view

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The tables that lose their foreign key, named by the schema's naming convention.
TABLES = ("events", "steps", "test_positions")


def _name(table: str) -> str:
    return f"fk_{table}_test_id_tests"


@contextmanager
def _views_apart() -> Iterator[None]:
    """On SQLite, the ``cycles`` view is dropped around the block: batch mode drops ``steps``
    and renames its copy, which SQLite refuses while a view names the table ("error in view
    cycles: no such table")."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("DROP VIEW cycles")
    yield
    if sqlite:
        op.execute(cycles_view("sqlite"))


def upgrade() -> None:
    with _views_apart():
        for table in TABLES:
            # SQLite cannot drop a constraint: batch mode copies the table into a new one.
            with op.batch_alter_table(table) as batch:
                batch.drop_constraint(_name(table), type_="foreignkey")


def downgrade() -> None:
    with _views_apart():
        for table in TABLES:
            with op.batch_alter_table(table) as batch:
                batch.create_foreign_key(_name(table), "tests", ["test_id"], ["id"])
