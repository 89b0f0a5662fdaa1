"""The ``sqlite-backup`` sync target: a SQLite file with the station database's schema, kept
up to date batch by batch."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence

import sqlalchemy as sa

from cellbench_sdk.storage import Database, open_database, schema, upgrade
from cellbench_sdk.sync import (
    ChangeFeed,
    Changes,
    Positions,
    RefusedRow,
    Row,
    SyncReport,
    SyncTarget,
    TestPosition,
    report,
    write_changes,
)
from cellbench_sync_sqlite.settings import SqliteBackupSettings

_BUSY_TIMEOUT_MS = 30000


class SqliteBackupTarget(SyncTarget):
    """Keeps a SQLite file equal to a station's database, up to its last committed batch.

    The first copy of a SQLite station database is made with SQLite's online backup API (a page
    copy of one consistent snapshot, written to a temporary file and renamed into place); from
    any other database the file starts empty. After that, each batch of new and changed rows is
    one transaction of the file, so a reader of the file always sees a consistent database.
    The file is in WAL mode: readers and the writer do not block each other.
    """

    def __init__(self, settings: SqliteBackupSettings) -> None:
        self.settings = settings
        self._path = settings.path
        self._connection: sqlite3.Connection | None = None
        self._feed: ChangeFeed | None = None

    def open(self) -> None:
        """Open the backup file, if it exists, and read how far it got."""
        if self._path.exists():
            self._connect()

    def _connect(self) -> None:
        upgrade(f"sqlite:///{self._path}")  # a station upgraded since the backup began
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            connection.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            positions = _positions(connection)
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        self._feed = ChangeFeed(positions, self.settings.max_rows)

    def sync_once(self, local: Database) -> SyncReport:
        """Copy one batch of what the backup lacks, in one transaction of the file (the first
        call makes the file if it does not exist)."""
        if self._connection is None:
            self._create(local)
            self._connect()
        assert self._connection is not None and self._feed is not None
        changes = self._feed.read(local)
        refused = _write(self._connection, changes) if len(changes) else []
        self._feed.advance(changes)
        return report(changes, refused=refused)

    def close(self) -> None:
        """Close the backup file."""
        if self._connection is not None:
            self._connection.close()
        self._connection = self._feed = None

    def _create(self, local: Database) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        partial = self._path.with_name(self._path.name + ".partial")
        partial.unlink(missing_ok=True)
        url = sa.make_url(local.url)
        if url.get_backend_name() == "sqlite":
            source = sqlite3.connect(url.database or "")
            destination = sqlite3.connect(partial)
            try:
                source.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
                source.backup(destination)
            finally:
                destination.close()
                source.close()
        else:
            open_database(f"sqlite:///{partial}").close()
        # Renamed only when whole: a crash leaves either no backup or a complete one.
        os.replace(partial, self._path)


def _positions(connection: sqlite3.Connection) -> Positions:
    tests: dict[int, TestPosition] = {}
    for test_id, status in connection.execute("SELECT id, status FROM tests").fetchall():
        (seq,) = connection.execute(
            "SELECT MAX(seq) FROM samples WHERE test_id = ?", (test_id,)).fetchone()
        (step_no,) = connection.execute(
            "SELECT MAX(step_no) FROM steps WHERE test_id = ?", (test_id,)).fetchone()
        tests[int(test_id)] = TestPosition(seq or 0, step_no or 0, status != "running")
    (event_id,) = connection.execute("SELECT MAX(id) FROM events").fetchone()
    return Positions(tests, event_id or 0)


def _write(connection: sqlite3.Connection, changes: Changes) -> list[RefusedRow]:
    """Write ``changes`` in one transaction; return the rows the file refused."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        refused = write_changes(changes, _BackupRows(connection))
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    return refused


class _BackupRows:
    """The backup file's tables, inside its open transaction (a sync row sink)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def delete_ids(self, table: str, ids: list[int]) -> None:
        marks = ", ".join("?" * len(ids))
        self._connection.execute(f"DELETE FROM {table} WHERE id IN ({marks})", ids)

    def delete_ranges(self, table: str, key: str, ranges: list[tuple[int, int, int]]) -> None:
        self._connection.executemany(
            f"DELETE FROM {table} WHERE test_id = ? AND {key} BETWEEN ? AND ?", ranges)

    def insert(self, table: str, rows: Sequence[Row]) -> None:
        columns = [c.name for c in schema.metadata.tables[table].columns]
        quoted = ", ".join(f'"{c}"' for c in columns)
        marks = ", ".join("?" * len(columns))
        self._connection.executemany(f"INSERT INTO {table} ({quoted}) VALUES ({marks})", rows)

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        self._connection.execute("SAVEPOINT batch_part")
        try:
            yield
        except BaseException:
            self._connection.execute("ROLLBACK TO batch_part")
            self._connection.execute("RELEASE batch_part")
            raise
        self._connection.execute("RELEASE batch_part")
