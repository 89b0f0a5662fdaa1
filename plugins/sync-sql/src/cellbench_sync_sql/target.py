"""The ``central-sql`` sync target: a station's database copied into a central SQL database."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cellbench_core.storage import Database
from cellbench_core.storage.schema import VERSION_TABLE
from cellbench_core.synctargets import (
    ChangeFeed,
    Changes,
    Positions,
    Row,
    SyncReport,
    SyncTarget,
    TestPosition,
    report,
)
from cellbench_sync_sql import central
from cellbench_sync_sql.settings import CentralSqlSettings

#: Keys per ``IN (...)`` list (SQL Server allows about 2,100 parameters per statement).
_IN_CHUNK = 1000


class CentralSqlTarget(SyncTarget):
    """Copies a station database into a central one, keyed by the station's name.

    Each batch is one central transaction that also records how far the station got (the
    ``sync_tests`` and ``sync_stations`` tables), so the central side alone knows where to go on.
    Rows are written by natural key, replacing any copy already there: a batch delivered twice
    leaves the same rows as one delivered once.
    """

    def __init__(self, settings: CentralSqlSettings) -> None:
        self.settings = settings
        self._engine: Engine | None = None
        self._feed: ChangeFeed | None = None
        self._event_id = 0

    def open(self) -> None:
        """Connect, create the central tables if needed and read this station's positions."""
        url = sa.make_url(self.settings.url)
        connect_args: dict[str, Any] = {}
        options: dict[str, Any] = {}
        if url.get_backend_name() in ("postgresql", "mysql", "mariadb"):
            connect_args["connect_timeout"] = self.settings.connect_timeout_s
        if url.get_driver_name() == "pyodbc":
            options["fast_executemany"] = True  # SQL Server: bulk parameter arrays
        engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True, **options)
        try:
            with engine.begin() as connection:
                if sa.inspect(connection).has_table(VERSION_TABLE):
                    raise ValueError(
                        f"central-sql: {url.render_as_string(hide_password=True)} is a station "
                        "database (it has a cellbench schema); give the central database its "
                        "own database")
                central.metadata.create_all(connection)
                positions = self._positions(connection)
        except BaseException:
            engine.dispose()
            raise
        self._engine = engine
        self._event_id = positions.event_id
        self._feed = ChangeFeed(positions, self.settings.max_rows)

    def _positions(self, connection: Connection) -> Positions:
        station = self.settings.station
        sync_tests, sync_stations = central.sync_tests, central.sync_stations
        tests = {
            int(row.test_id): TestPosition(int(row.seq), int(row.step_no), bool(row.final))
            for row in connection.execute(
                sa.select(sync_tests).where(sync_tests.c.origin == station))
        }
        event_id = connection.execute(sa.select(sync_stations.c.event_id)
                                      .where(sync_stations.c.origin == station)).scalar()
        return Positions(tests, int(event_id or 0))

    def sync_once(self, local: Database) -> SyncReport:
        """Copy one batch of what the central database lacks, in one central transaction."""
        if self._engine is None or self._feed is None:
            raise RuntimeError("central-sql: sync_once() before open()")
        changes = self._feed.read(local)
        if len(changes):
            with self._engine.begin() as connection:
                event_id = self._write(connection, changes)
            self._event_id = event_id
        self._feed.advance(changes)
        return report(changes)

    def close(self) -> None:
        """Close the central connections."""
        if self._engine is not None:
            self._engine.dispose()
        self._engine = self._feed = None

    def _write(self, connection: Connection, changes: Changes) -> int:
        """Write ``changes`` and the new positions; return the new event position."""
        station = self.settings.station
        for name in ("batteries", "channels", "tests", "events"):
            rows = changes.tables()[name]
            table = central.TABLES[name]
            _delete_keys(connection, table, table.c.id, station, [row[0] for row in rows])
            _insert(connection, table, station, rows)
        for name, key, ranges in (("samples", "seq", changes.sample_ranges),
                                  ("sample_aux", "seq", changes.sample_ranges),
                                  ("steps", "step_no", changes.step_ranges)):
            table = central.TABLES[name]
            if ranges:
                delete = sa.delete(table).where(
                    table.c.origin == station, table.c.test_id == sa.bindparam("t"),
                    table.c[key].between(sa.bindparam("lo"), sa.bindparam("hi")))
                connection.execute(delete, [{"t": t, "lo": lo, "hi": hi}
                                            for t, (lo, hi) in sorted(ranges.items())])
            _insert(connection, table, station, changes.tables()[name])
        positions = central.sync_tests
        _delete_keys(connection, positions, positions.c.test_id, station, changes.positions)
        _insert(connection, positions, station, [
            (test_id, p.seq, p.step_no, p.final) for test_id, p in changes.positions.items()])
        event_id = max([self._event_id, *(int(row[0]) for row in changes.events)])
        stations = central.sync_stations
        connection.execute(sa.delete(stations).where(stations.c.origin == station))
        _insert(connection, stations, station, [(event_id, time.time())])
        return event_id


def _chunks(keys: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(keys), _IN_CHUNK):
        yield keys[start : start + _IN_CHUNK]


def _delete_keys(connection: Connection, table: sa.Table, key: sa.Column[Any], station: str,
                 keys: Iterable[Any]) -> None:
    for chunk in _chunks(sorted(keys)):
        connection.execute(sa.delete(table).where(table.c.origin == station, key.in_(chunk)))


def _insert(connection: Connection, table: sa.Table, station: str, rows: Sequence[Row]) -> None:
    """Insert rows (without their origin) the fastest way the database offers."""
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        quote = connection.dialect.identifier_preparer.quote
        columns = ", ".join(quote(c.name) for c in table.columns)
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            with cursor.copy(f"COPY {quote(table.name)} ({columns}) FROM STDIN (FORMAT BINARY)") \
                    as copy:
                copy.set_types([_pg_type(c) for c in table.columns])
                for row in rows:
                    copy.write_row((station, *row))
        finally:
            cursor.close()
        return
    # Elsewhere an executemany: pymysql sends it as multi-row INSERTs.
    names = [c.name for c in table.columns]
    connection.execute(sa.insert(table), [dict(zip(names, (station, *row), strict=True))
                                          for row in rows])


def _pg_type(column: sa.Column[Any]) -> str:
    if isinstance(column.type, sa.BigInteger):
        return "int8"
    if isinstance(column.type, sa.Integer):
        return "int4"
    if isinstance(column.type, sa.Double):
        return "float8"
    if isinstance(column.type, sa.Boolean):
        return "bool"
    return "text"
