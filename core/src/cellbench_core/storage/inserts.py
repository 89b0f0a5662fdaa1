"""Inserting many rows the fastest way each database offers (binary COPY on PostgreSQL, one
DBAPI executemany elsewhere), and allocating their ids in bulk: a start of 100,000 tests is a
few statements' work, not 100,000 round trips of ``INSERT ... RETURNING``."""

from __future__ import annotations

from collections.abc import Mapping
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


def insert_tests(connection: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert test rows (without ids) and return their new ids in order, the fastest way the
    database offers: a start of 100,000 tests is one statement's work, not 100,000 round
    trips of ``INSERT ... RETURNING``."""
    table = schema.tests
    dialect = connection.dialect.name
    if dialect == "sqlite":
        # The transaction holds the write lock (BEGIN IMMEDIATE): the next ids are those
        # SQLite itself would give, one above the largest.
        last = connection.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0
        ids = list(range(last + 1, last + 1 + len(rows)))
    elif dialect == "postgresql":
        # The id sequence hands out a block at once, as it would for each row.
        ids = [int(i) for i in connection.execute(sa.text(
            "SELECT nextval(pg_get_serial_sequence('tests', 'id')) "
            "FROM generate_series(1, :n)"), {"n": len(rows)}).scalars()]
    else:  # MySQL/MariaDB: only the server's AUTO_INCREMENT knows which ids are free
        return _insert_auto_increment(connection, table, rows)
    for row, test_id in zip(rows, ids, strict=True):
        row["id"] = test_id
    insert_rows(connection, table, rows)
    return ids


#: Rows per multi-row INSERT whose ids MySQL/MariaDB hands out together.
_AUTO_INCREMENT_ROWS = 2000


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
    columns = list(rows[0])
    quote = connection.dialect.identifier_preparer.quote
    head = f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) VALUES "
    mark = f"({', '.join(['%s'] * len(columns))})"
    ids: list[int] = []
    for start in range(0, len(rows), _AUTO_INCREMENT_ROWS):
        chunk = rows[start:start + _AUTO_INCREMENT_ROWS]
        result = connection.exec_driver_sql(
            head + ", ".join([mark] * len(chunk)), tuple(row[c] for row in chunk for c in columns))
        first = int(result.lastrowid)
        ids.extend(range(first, first + len(chunk) * int(step), int(step)))
    return ids


def insert_rows(connection: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (each with the same keys): one binary COPY on PostgreSQL, one DBAPI
    executemany of tuples elsewhere (SQLAlchemy's handling of each row's parameters would
    cost more than the insert)."""
    if not rows:
        return
    columns = list(rows[0])
    dialect = connection.dialect
    if dialect.name != "postgresql":
        quote = dialect.identifier_preparer.quote
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        connection.exec_driver_sql(
            f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
            f"VALUES ({', '.join([mark] * len(columns))})",
            [tuple(row[c] for c in columns) for row in rows])
        return
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        copy_rows(cursor, connection.dialect, table,
                  (tuple(row[c] for c in columns) for row in rows), columns)
    finally:
        cursor.close()
