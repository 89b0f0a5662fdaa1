"""The central database's tables: the station database's tables with ``origin`` (the name of the
station the row comes from) leading every primary key, and two bookkeeping tables holding how far
each station got (docs/sync.md); and :func:`upgrade`, which creates or migrates them
(docs/central.md).

The Alembic migrations in :mod:`cellbench_sync_sql.migrations` create exactly these tables and
indexes; a test compares the two.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy import BigInteger, Boolean, Column, Double, Index, MetaData, String, Table
from sqlalchemy.engine import Connection, Engine

from cellbench_sdk.storage import schema

logger = logging.getLogger(__name__)

metadata = MetaData(naming_convention=schema.NAMING_CONVENTION)

#: Alembic's bookkeeping table of the central migrations (the station's is another).
VERSION_TABLE = "cellbench_central_alembic_version"
#: The revision of the schema cellbench created before it had central migrations.
BASELINE = "c0001"
_MIGRATIONS = "cellbench_sync_sql:migrations"
#: One schema change at a time per central database: the key of PostgreSQL's advisory lock,
#: and the name of MariaDB/MySQL's ``GET_LOCK``.
_LOCK_KEY = 0x63656E7472616C  # "central"
_LOCK_NAME = "cellbench_central_schema"
_LOCK_TIMEOUT_S = 3600
_LOCK_POLL_S = 0.5


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
# What readers look up (revision c0002): one test's samples by time, a battery's tests, the
# running tests.
Index(None, samples.c.origin, samples.c.test_id, samples.c.unix_time_s)
Index(None, batteries.c.name)
Index(None, tests.c.origin, tests.c.battery_id)
Index(None, tests.c.status)

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


def upgrade(engine: Engine) -> tuple[str | None, str | None]:
    """Create the central tables, or migrate them to this cellbench's schema; return the
    revisions before (None: no central tables) and after.

    Safe to run while stations sync, and from several processes at once (each waits for the
    one migrating). A database created before central migrations existed is recognised (it has
    ``sync_stations``) and upgraded from :data:`BASELINE`. A database at a revision newer than
    this cellbench knows is left as it is: migrations only add, so older stations still sync.
    ValueError when ``engine`` is a station database.
    """
    from alembic import command  # lazily: Alembic takes a third of a second to import
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", _MIGRATIONS)
    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    with engine.connect() as connection, _schema_lock(connection):
        config.attributes["connection"] = connection
        inspector = sa.inspect(connection)
        if inspector.has_table(schema.VERSION_TABLE):
            raise ValueError(
                f"central-sql: {engine.url.render_as_string(hide_password=True)} is a station "
                "database (it has a cellbench schema); give the central database its own "
                "database")
        before = _revision(connection)
        # Alembic makes its version table first: with one, a first upgrade was interrupted.
        made_before_migrations = (not inspector.has_table(VERSION_TABLE)
                                  and inspector.has_table(sync_stations.name))
        connection.commit()  # Alembic must begin the transactions it commits itself
        if made_before_migrations:
            # Made before central migrations: complete it as that cellbench would have (it
            # may be older still), then take it as the baseline.
            add_station_columns(connection)
            if "cycles" not in inspector.get_view_names():
                connection.execute(sa.text(
                    schema.cycles_view(connection.dialect.name, ("origin", "test_id"))))
            connection.commit()
            command.stamp(config, BASELINE)
            connection.commit()
            before = BASELINE
        if before is not None and before not in known:
            logger.warning("central schema revision %s is newer than this cellbench knows; "
                           "leaving it as it is", before)
            return before, before
        command.upgrade(config, "head")
        connection.commit()
        add_station_columns(connection)
        connection.commit()
        return before, _revision(connection)


def _revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    revision = context.get_current_revision()
    connection.commit()  # end the reading transaction: migrations begin their own
    return revision


@contextmanager
def _schema_lock(connection: Connection) -> Iterator[None]:
    """Hold the central database's schema lock (a session lock, which survives the
    migrations' commits) while the block runs.

    A process waiting for it tries again every :data:`_LOCK_POLL_S` s instead of blocking in
    the server: a session blocked there would keep a snapshot open, which the holder's
    ``CREATE INDEX CONCURRENTLY`` waits for, a deadlock.
    """
    dialect = connection.dialect.name
    take = {"postgresql": "SELECT pg_try_advisory_lock(:key)",
            "mysql": "SELECT GET_LOCK(:name, 0)", "mariadb": "SELECT GET_LOCK(:name, 0)"}
    release = {"postgresql": "SELECT pg_advisory_unlock(:key)",
               "mysql": "SELECT RELEASE_LOCK(:name)", "mariadb": "SELECT RELEASE_LOCK(:name)"}
    names = {"key": _LOCK_KEY, "name": _LOCK_NAME}
    if dialect in take:
        deadline = time.monotonic() + _LOCK_TIMEOUT_S
        while True:
            got = connection.execute(sa.text(take[dialect]), names).scalar()
            connection.commit()
            if got in (True, 1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"central-sql: another process has been changing the "
                                   f"central schema for {_LOCK_TIMEOUT_S} s; try again later")
            time.sleep(_LOCK_POLL_S)
    try:
        yield
    finally:
        connection.rollback()
        if dialect in release:
            connection.execute(sa.text(release[dialect]), names)
            connection.commit()


def add_station_columns(connection: Connection) -> None:
    """Add the columns a newer cellbench has added to the station tables (new columns are
    nullable, so the rows already there stay valid): a central database follows the stations'
    upgrades."""
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
