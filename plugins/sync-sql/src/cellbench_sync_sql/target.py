"""The ``central-sql`` sync target: a station's database copied into a central SQL database."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cellbench_sdk.storage import Database, copy_rows
from cellbench_sdk.sync import (
    ChangeFeed,
    Changes,
    Positions,
    RefusedRow,
    Row,
    SyncReport,
    SyncTarget,
    TestPosition,
    in_chunks,
    report,
    write_changes,
)
from cellbench_sync_sql import central
from cellbench_sync_sql.settings import CentralSqlSettings


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
            central.upgrade(engine)
            with engine.begin() as connection:
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
        refused: list[RefusedRow] = []
        if len(changes):
            with self._engine.begin() as connection:
                event_id = self._write(connection, changes, refused)
            self._event_id = event_id
        self._feed.advance(changes)
        return report(changes, refused=refused)

    def close(self) -> None:
        """Close the central connections."""
        if self._engine is not None:
            self._engine.dispose()
        self._engine = self._feed = None

    def _write(self, connection: Connection, changes: Changes, refused: list[RefusedRow]) -> int:
        """Write ``changes`` and the new positions (adding the rows refused to ``refused``);
        return the new event position."""
        station = self.settings.station
        refused.extend(write_changes(changes, _CentralRows(connection, station)))
        positions = central.sync_tests
        for test_ids in in_chunks(changes.positions):
            connection.execute(sa.delete(positions).where(
                positions.c.origin == station, positions.c.test_id.in_(test_ids)))
        _insert(connection, positions, station, [
            (test_id, p.seq, p.step_no, p.final) for test_id, p in changes.positions.items()])
        event_id = max([self._event_id, *(int(row[0]) for row in changes.events)])
        stations = central.sync_stations
        connection.execute(sa.delete(stations).where(stations.c.origin == station))
        _insert(connection, stations, station, [(event_id, time.time())])
        return event_id


class _CentralRows:
    """The central tables of one station, in one transaction (a sync row sink)."""

    def __init__(self, connection: Connection, station: str) -> None:
        self._connection, self._station = connection, station

    def delete_ids(self, table: str, ids: list[int]) -> None:
        columns = central.TABLES[table].c
        self._connection.execute(sa.delete(central.TABLES[table]).where(
            columns.origin == self._station, columns.id.in_(ids)))

    def delete_ranges(self, table: str, key: str, ranges: list[tuple[int, int, int]]) -> None:
        columns = central.TABLES[table].c
        delete = sa.delete(central.TABLES[table]).where(
            columns.origin == self._station, columns.test_id == sa.bindparam("t"),
            columns[key].between(sa.bindparam("lo"), sa.bindparam("hi")))
        self._connection.execute(delete, [{"t": t, "lo": lo, "hi": hi} for t, lo, hi in ranges])

    def insert(self, table: str, rows: Sequence[Row]) -> None:
        _insert(self._connection, central.TABLES[table], self._station, rows)

    def savepoint(self) -> AbstractContextManager[object]:
        return self._connection.begin_nested()


def _insert(connection: Connection, table: sa.Table, station: str, rows: Sequence[Row]) -> None:
    """Insert rows (without their origin) the fastest way the database offers."""
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            copy_rows(cursor, connection.dialect, table, ((station, *row) for row in rows))
        finally:
            cursor.close()
        return
    # Elsewhere an executemany: pymysql sends it as multi-row INSERTs.
    names = [c.name for c in table.columns]
    connection.execute(sa.insert(table), [dict(zip(names, (station, *row), strict=True))
                                          for row in rows])
