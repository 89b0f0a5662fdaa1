"""PostgreSQL's binary ``COPY ... FROM STDIN``, the fastest way rows enter a PostgreSQL table
(psycopg 3): the statement and the column types for a table, and a copy of rows.

The station's sample writer and the ``central-sql`` sync target both insert this way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa


def copy_statement(dialect: sa.Dialect, table: sa.Table,
                   columns: Sequence[str] | None = None) -> str:
    """``COPY table (columns...) FROM STDIN (FORMAT BINARY)``, of ``columns`` (default: every
    column in table order; those left out take their defaults, a serial id its next value)."""
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(c.name) for c in _columns(table, columns))
    return f"COPY {quote(table.name)} ({names}) FROM STDIN (FORMAT BINARY)"


def copy_types(table: sa.Table, columns: Sequence[str] | None = None) -> list[str]:
    """The PostgreSQL type name of each of ``columns`` of ``table`` (default: every column),
    as a binary COPY needs them."""
    return [_pg_type(column) for column in _columns(table, columns)]


def copy_rows(cursor: Any, dialect: sa.Dialect, table: sa.Table,
              rows: Iterable[tuple[Any, ...]], columns: Sequence[str] | None = None) -> None:
    """Insert ``rows`` (values in the order of ``columns``, default every column in table
    order; None for NULL) into ``table`` with one binary COPY on ``cursor``, a psycopg 3
    cursor."""
    with cursor.copy(copy_statement(dialect, table, columns)) as copy:
        copy.set_types(copy_types(table, columns))
        for row in rows:
            copy.write_row(row)


def _columns(table: sa.Table, columns: Sequence[str] | None) -> list[sa.Column[Any]]:
    return list(table.columns) if columns is None else [table.c[name] for name in columns]


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
