"""The central database's tables: the station database's tables with ``origin`` (the name of the
station the row comes from) leading every primary key, and two bookkeeping tables holding how far
each station got (docs/sync.md)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import BigInteger, Boolean, Column, Double, Index, MetaData, String, Table
from sqlalchemy.engine import Connection

from cellbench_sdk.storage import schema

metadata = MetaData(naming_convention=schema.NAMING_CONVENTION)


def _with_origin(table: Table) -> Table:
    """A copy of a station table, keyed by origin first, without foreign keys (each station
    holds its own ids, and samples must insert fast)."""
    columns = [Column("origin", String(schema.NAME_LENGTH), primary_key=True)]
    columns += [Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable,
                       autoincrement=False) for c in table.columns]
    return Table(table.name, metadata, *columns)


batteries = _with_origin(schema.batteries)
channels = _with_origin(schema.channels)
tests = _with_origin(schema.tests)
samples = _with_origin(schema.samples)
sample_aux = _with_origin(schema.sample_aux)
steps = _with_origin(schema.steps)
events = _with_origin(schema.events)
Index(None, events.c.origin, events.c.test_id)

#: Per station: the highest event id it holds, and when it last committed anything.
sync_stations = Table(
    "sync_stations",
    metadata,
    Column("origin", String(schema.NAME_LENGTH), primary_key=True),
    Column("event_id", BigInteger, nullable=False),
    Column("synced_unix_s", Double, nullable=False),
)

#: Per test: every sample up to ``seq`` and step up to ``step_no`` is here; ``final``: the test's
#: row here has its final status. Written in the same transaction as the rows it counts.
sync_tests = Table(
    "sync_tests",
    metadata,
    Column("origin", String(schema.NAME_LENGTH), primary_key=True),
    Column("test_id", BigInteger, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("step_no", BigInteger, nullable=False),
    Column("final", Boolean, nullable=False),
)

#: The copied tables by name.
TABLES = {t.name: t for t in (batteries, channels, tests, samples, sample_aux, steps, events)}


def ensure_schema(connection: Connection) -> None:
    """Create the central tables and the ``cycles`` view where missing, and add the columns a
    newer cellbench has added to the station tables (new columns are nullable, so the rows
    already there stay valid): a central database follows the stations' upgrades."""
    metadata.create_all(connection)
    inspector = sa.inspect(connection)
    dialect = connection.dialect
    for table in metadata.sorted_tables:
        have = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            if not column.nullable:
                raise ValueError(f"central-sql: table {table.name} lacks column {column.name}, "
                                 "which cannot be added to the rows there: migrate it by hand")
            connection.execute(sa.text(
                f"ALTER TABLE {dialect.identifier_preparer.quote(table.name)} ADD COLUMN "
                f"{dialect.identifier_preparer.quote(column.name)} "
                f"{column.type.compile(dialect=dialect)}"))
    if "cycles" not in inspector.get_view_names():
        connection.execute(sa.text(schema.cycles_view(dialect.name, ("origin", "test_id"))))
