"""No foreign keys from ``events``, ``steps`` and ``test_positions`` to ``tests``, nor from
``tests`` to ``channels``.

Those rows are written by the station, in waves across all its running tests, only for tests
it recorded itself, and tests are never deleted under them (``cellbench test delete`` removes
a test's rows first); a test's channel is looked up or created in the transaction that records
the test, and channels are never deleted. PostgreSQL checks a foreign key by a trigger per row,
which doubled the cost of a station-wide wave (a start of 100,000 tests: 2.4 s of the events'
COPY instead of 0.4 s, 2.2 s of the tests' instead of 0.5 s). The central schema has none
either. Their indexes and primary keys stay; so do the foreign keys that guard rows which can
be deleted: ``tests`` to ``batteries`` and ``test_queue`` to ``tests``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from alembic import op

from cellbench_core.storage.schema import LIVE_SAMPLES_VIEW, cycles_view

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The foreign keys dropped: table, column, and the table and column it refers to.
FOREIGN_KEYS = (("events", "test_id", "tests", "id"), ("steps", "test_id", "tests", "id"),
                ("test_positions", "test_id", "tests", "id"),
                ("tests", "channel_id", "channels", "id"))


def _name(table: str, column: str, referred: str) -> str:
    """The foreign key's name, by the schema's naming convention."""
    return f"fk_{table}_{column}_{referred}"


@contextmanager
def _views_apart() -> Iterator[None]:
    """On SQLite, the views are dropped around the block: batch mode drops a table and renames
    its copy, which SQLite refuses while a view names the table ("error in view cycles: no
    such table")."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("DROP VIEW cycles")
        op.execute("DROP VIEW live_samples")
    yield
    if sqlite:
        op.execute(cycles_view("sqlite"))
        op.execute(LIVE_SAMPLES_VIEW)


def upgrade() -> None:
    with _views_apart():
        for table, column, referred, _ in FOREIGN_KEYS:
            # SQLite cannot drop a constraint: batch mode copies the table into a new one.
            with op.batch_alter_table(table) as batch:
                batch.drop_constraint(_name(table, column, referred), type_="foreignkey")
        if op.get_bind().dialect.name in ("mysql", "mariadb"):
            # MySQL made an index for the foreign key of tests.channel_id, which it keeps; the
            # other databases never had one.
            op.drop_index(_name("tests", "channel_id", "channels"), table_name="tests")


def downgrade() -> None:
    with _views_apart():
        for table, column, referred, key in FOREIGN_KEYS:
            with op.batch_alter_table(table) as batch:
                batch.create_foreign_key(_name(table, column, referred), referred, [column],
                                         [key])
