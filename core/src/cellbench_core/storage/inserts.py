"""Inserting many rows the fastest way each database offers (binary COPY on PostgreSQL, one
DBAPI executemany on SQLite, multi-row INSERTs on MySQL/MariaDB), and allocating their ids in
bulk: a start of 100,000 tests is a few statements' work, not 100,000 round trips of
``INSERT ... RETURNING``."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from cellbench_core.storage import schema
from cellbench_core.storage.pgcopy import copy_rows


def insert_one(connection: Connection, table: sa.Table, row: Mapping[str, Any]) -> int:
    """Insert one row and return its new id."""
    key = connection.execute(sa.insert(table).values(row)).inserted_primary_key
    assert key is not None  # a single-row insert always has one
    return int(key[0])


def insert_with_ids(connection: Connection, table: sa.Table,
                    rows: list[dict[str, Any]]) -> list[int]:
    """Insert rows (without ids) into ``table``, whose primary key is an auto-numbered integer
    ``id``, and return their new ids in order, the fastest way the database offers."""
    if not rows:
        return []
    dialect = connection.dialect.name
    if dialect == "sqlite":
        # The transaction holds the write lock (BEGIN IMMEDIATE): the next ids are those
        # SQLite itself would give, one above the largest.
        last = connection.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0
        ids = list(range(last + 1, last + 1 + len(rows)))
    elif dialect == "postgresql":
        # The id sequence hands out a block at once, as it would for each row; as one array,
        # which takes half the time of 100,000 rows of one number. The sequence is looked up
        # once: pg_get_serial_sequence inside the block would run for every id (7x slower).
        sequence = connection.execute(sa.text("SELECT pg_get_serial_sequence(:table, 'id')"),
                                      {"table": table.name}).scalar_one()
        ids = [int(i) for i in connection.execute(sa.text(
            "SELECT array_agg(id ORDER BY id) FROM (SELECT nextval(CAST(:sequence AS regclass)) "
            "AS id FROM generate_series(1, :n)) AS ids"),
            {"sequence": sequence, "n": len(rows)}).scalar_one()]
    else:  # MySQL/MariaDB: only the server's AUTO_INCREMENT knows which ids are free
        return _insert_auto_increment(connection, table, rows)
    for row, new_id in zip(rows, ids, strict=True):
        row["id"] = new_id
    insert_rows(connection, table, rows)
    return ids


#: Id ranges per ``INSERT ... SELECT`` of started events (ids of one start mostly form one).
_RANGES_PER_STATEMENT = 500


def insert_started_events(connection: Connection, test_ids: Sequence[int]) -> None:
    """Record a ``test_started`` event for each of the just inserted tests ``test_ids`` (in
    ascending order) with ``INSERT ... SELECT`` from their rows: the database makes the rows
    itself, by ranges of consecutive ids, and no row crosses the connection (on MySQL/MariaDB
    writing 100,000 of them as text was 0.6 s of Python)."""
    tests, channels, events = schema.tests, schema.channels, schema.events
    ranges: list[tuple[int, int]] = []
    for test_id in test_ids:
        if ranges and test_id == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], test_id)
        else:
            ranges.append((test_id, test_id))
    message = sa.literal("test ") + sa.cast(tests.c.id, sa.String) + sa.literal(" started")
    for start in range(0, len(ranges), _RANGES_PER_STATEMENT):
        part = ranges[start:start + _RANGES_PER_STATEMENT]
        started = (sa.select(sa.literal("test_started"), message, tests.c.id, channels.c.name,
                             tests.c.start_unix_s, sa.literal("{}"))
                   .join_from(tests, channels, tests.c.channel_id == channels.c.id)
                   .where(sa.or_(*(tests.c.id.between(lo, hi) for lo, hi in part)))
                   .order_by(tests.c.id))
        connection.execute(events.insert().from_select(
            ["kind", "message", "test_id", "channel", "unix_time_s", "data"], started))


def _insert_auto_increment(connection: Connection, table: sa.Table,
                           rows: list[dict[str, Any]]) -> list[int]:
    """Insert rows into a MySQL/MariaDB table with an AUTO_INCREMENT id; their ids in order.

    With ``innodb_autoinc_lock_mode`` 0 or 1 (MariaDB's default) one multi-row INSERT gets
    consecutive ids, the first of which the server reports: a few thousand rows per
    statement. Otherwise (MySQL 8's default, 2) ids of concurrent inserts interleave, and
    each row is inserted and asked for its id alone."""
    mode, step = connection.exec_driver_sql(
        "SELECT @@innodb_autoinc_lock_mode, @@auto_increment_increment").one()
    if int(mode) not in (0, 1):
        insert = table.insert().returning(table.c.id, sort_by_parameter_order=True)
        return [int(i) for i in connection.execute(insert, rows).scalars()]
    ids: list[int] = []
    with _driver_cursor(connection) as cursor:
        for statement, count in _built_ahead(_mysql_inserts(connection, table, rows)):
            cursor.execute(statement)
            first = int(cursor.lastrowid)
            ids.extend(range(first, first + count * int(step), int(step)))
    return ids


def insert_rows(connection: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (each with the same keys): one binary COPY on PostgreSQL, multi-row
    INSERTs on MySQL/MariaDB, one DBAPI executemany of tuples on SQLite (SQLAlchemy's
    handling of each row's parameters would cost more than the insert)."""
    if not rows:
        return
    columns = list(rows[0])
    dialect = connection.dialect
    if dialect.name == "sqlite":
        quote = dialect.identifier_preparer.quote
        connection.exec_driver_sql(
            f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
            f"VALUES ({', '.join(['?'] * len(columns))})", list(map(_values(columns), rows)))
        return
    with _driver_cursor(connection) as cursor:
        if dialect.name == "postgresql":
            copy_rows(cursor, dialect, table, map(_values(columns), rows), columns)
        else:
            for statement, _ in _built_ahead(_mysql_inserts(connection, table, rows)):
                cursor.execute(statement)


def _values(columns: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A row's values of ``columns`` as a tuple (itemgetter: no Python loop per value)."""
    getter = itemgetter(*columns)
    return getter if len(columns) > 1 else lambda row: (getter(row),)


@contextmanager
def _driver_cursor(connection: Connection) -> Iterator[Any]:
    """A cursor of the DBAPI connection under ``connection`` (in its transaction)."""
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        yield cursor
    finally:
        cursor.close()


#: Rows per multi-row INSERT on MySQL/MariaDB (whose ids the server hands out together), and
#: the characters its text may reach before a statement ends early: at most 2 MiB at four
#: bytes a character, under every server's default ``max_allowed_packet`` (4 MiB on MySQL
#: 5.7, 16 MiB on MariaDB, 64 MiB on MySQL 8).
_STATEMENT_ROWS = 2000
_STATEMENT_CHARS = 1 << 19


def _built_ahead(statements: Iterator[tuple[str, int]]) -> Iterator[tuple[str, int]]:
    """``statements``, each built by a worker thread while the server executes the one before
    (pymysql waits for the server with the GIL released): the server's time and the Python
    that writes the text overlap instead of adding up (a third less for 100,000 rows)."""
    with ThreadPoolExecutor(1, thread_name_prefix="cellbench-insert") as builder:
        pending = builder.submit(next, statements, None)
        while (statement := pending.result()) is not None:
            pending = builder.submit(next, statements, None)
            yield statement


def _mysql_inserts(connection: Connection, table: sa.Table,
                   rows: list[dict[str, Any]]) -> Iterator[tuple[str, int]]:
    """The multi-row ``INSERT`` statements, as complete text, that insert ``rows`` into
    ``table`` on MySQL/MariaDB, each with the number of rows it holds.

    pymysql's executemany escapes every value of every row in Python; rows inserted together
    mostly repeat the same texts (plan, station, driver...), so here each distinct text is
    escaped once, by the driver connection itself (its character set and the session's
    NO_BACKSLASH_ESCAPES apply). Numbers and NULL are written as pymysql writes them."""
    columns = list(rows[0])
    quote = connection.dialect.identifier_preparer.quote
    head = f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) VALUES "
    escape = connection.connection.driver_connection.escape  # type: ignore[union-attr]
    values = _values(columns)
    texts: dict[str, str] = {}

    def literal(value: Any) -> str:
        kind = type(value)
        if kind is str:
            texts[value] = escape(value)
            return texts[value]
        if value is None:
            return "NULL"
        if kind is int:
            return str(value)
        if kind is float and math.isfinite(value):
            text = repr(value)
            return text if "e" in text else text + "e0"  # a DOUBLE literal, not a DECIMAL
        return str(escape(value))  # anything else (non-finite floats are refused) its way

    held: list[str] = []  # the rows of the statement being built, as text
    size = 0
    for row in rows:
        # A text seen before is taken from ``texts`` without a call (numbers never match).
        text = f"({', '.join([texts[v] if v in texts else literal(v) for v in values(row)])})"
        if held and (len(held) == _STATEMENT_ROWS or size + len(text) > _STATEMENT_CHARS):
            yield head + ", ".join(held), len(held)
            held, size = [], 0
        held.append(text)
        size += len(text) + 2
    yield head + ", ".join(held), len(held)
